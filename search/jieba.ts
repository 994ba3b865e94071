// Jieba's Chinese word segmentation (@node-rs/jieba, a native module), loaded
// once, on first use: its dictionary takes a few hundred milliseconds to load
// (measured by bench/search-corpus.ts), which a process that never indexes
// Chinese should not pay.
import { createRequire } from 'node:module'
import type { Jieba } from '@node-rs/jieba'

const require = createRequire(import.meta.url)
let jieba: Jieba | undefined

/** Loads the dictionary now (a server may call it at start, off the first message's path). */
export function loadJieba (): Jieba {
  if (jieba === undefined) {
    const { Jieba: JiebaClass } = require('@node-rs/jieba') as typeof import('@node-rs/jieba')
    const { dict } = require('@node-rs/jieba/dict') as { dict: Uint8Array }
    jieba = JiebaClass.withDict(dict)
  }
  return jieba
}

/** The words of a run of Chinese text in search mode (long words and the words inside them: 长江大桥 → 长江, 大桥, 长江大桥). */
export function words (run: string): string[] {
  return loadJieba().cutForSearch(run, true)
}
