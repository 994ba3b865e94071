FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
ENV MQTT_PORT=1883 HTTP_PORT=8080
EXPOSE 1883 8080
# node itself is PID 1 (exec form, no npm or shell in between), so `docker stop`'s
# SIGTERM reaches the server and it drains; test/stopping.test.ts runs this line.
CMD ["node", "--max-semi-space-size=64", "--import", "tsx", "server/main.ts"]
