// inboxd client SDK: see README.md in this folder.
export { createClient, ChatClient, SendError, type ClientOptions, type ClientEvents, type SendOptions } from './client.ts'
export { MemoryStorage, type ClientStorage } from './storage.ts'
export { ApiError } from './rest.ts'
export { GroupsApi } from './groups.ts'
export { BlocksApi, type Block } from './blocks.ts'
export { generateKeyPair, toBase64, fromBase64, type KeyPair, type SealedBody } from './e2ee.ts'
export type * from './types.ts'
export { encryptFile, decryptFile, type UploadOptions } from './attachments.ts'
