// Opens the long-term tier for the storage mode: PostgreSQL with DATABASE_URL
// (either mode), else in embedded mode a LevelDB of its own in DATA_DIR; Redis
// mode without DATABASE_URL has none (search answers search_unavailable).
// Returns the store, the archiver that follows the hot tier into it, and search.
import { join } from 'node:path'
import type { Config } from '../config/config.ts'
import type { ArchiveSource } from '../history/archive-source.ts'
import type { ArchiveStore } from './archive-store.ts'
import { Archiver, type ArchiveMetrics } from './archiver.ts'
import { PgArchive } from './pg-archive.ts'
import { LevelArchive } from './level-archive.ts'
import { SearchService } from './search-service.ts'

export interface OpenedArchive {
  store: ArchiveStore
  archiver: Archiver
  search: SearchService
  close (): Promise<void>
}

export async function openArchive (config: Config, source: ArchiveSource | undefined, options: { holder: string, metrics?: ArchiveMetrics, onError?: (error: unknown) => void }): Promise<OpenedArchive | undefined> {
  if (source === undefined) return undefined
  const store: ArchiveStore = config.databaseUrl !== undefined
    ? await PgArchive.open(config.databaseUrl)
    : await LevelArchive.open(join(config.dataDir, 'archive'))
  const archiver = new Archiver(source, store, options)
  return {
    store,
    archiver,
    search: new SearchService(store, config.historyRetentionMs),
    async close () {
      await archiver.stop()
      await store.close()
    }
  }
}
