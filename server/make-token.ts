// `npm run token -- <userId> [ttlSeconds]`: prints an HS256 token signed with
// JWT_SECRET (with JWT_ISSUER / JWT_AUDIENCE as iss / aud when set), for
// trying the server and for development. Production tokens come from your
// own auth service.
import { createSigner } from 'fast-jwt'
import { isValidId } from '../protocol/identity.ts'

const [userId, ttl = '86400'] = process.argv.slice(2)
const secret = process.env.JWT_SECRET
if (!isValidId(userId)) {
  process.stderr.write('usage: npm run token -- <userId> [ttlSeconds]   (userId: A-Z a-z 0-9 . _ @ -)\n')
  process.exit(1)
}
if (!secret || secret.length < 32) {
  process.stderr.write('invalid configuration: JWT_SECRET must be set to the server\'s secret (32+ characters)\n')
  process.exit(1)
}
const iss = process.env.JWT_ISSUER || undefined
const aud = process.env.JWT_AUDIENCE || undefined
process.stdout.write(createSigner({ key: secret, algorithm: 'HS256', expiresIn: Number(ttl) * 1000, iss, aud })({ sub: userId }) + '\n')
