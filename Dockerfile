FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
ENV MQTT_PORT=1883 HTTP_PORT=8080
EXPOSE 1883 8080
CMD ["npm", "start"]
