-- Up Migration
-- The archive (archive/pg-archive.ts): every event of every user log and group
-- log, and the search index over the messages' text. node-pg-migrate runs every
-- pending migration in one transaction.

-- btree_gin: a GIN index over (owner, tokens), so a user's search reads only
-- their own postings.
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE user_events (
  owner text NOT NULL,
  seq bigint NOT NULL,
  ts bigint NOT NULL,
  -- The peer's id, or g:<group>.
  conversation text NOT NULL,
  -- m message, r receipt, x recall, e group event, n notice.
  kind char(1) NOT NULL,
  id text,
  -- The exact JSON delivered, or NULL for a reference to a group event.
  event text,
  ref_group text,
  ref_gseq bigint,
  -- The searchable doc; NULL when not searchable (or recalled).
  search_text text,
  tokens text[],
  PRIMARY KEY (owner, seq),
  CHECK ((event IS NULL) = (ref_group IS NOT NULL) AND (ref_group IS NULL) = (ref_gseq IS NULL))
);

-- Conversation pages.
CREATE INDEX user_events_conversation ON user_events (owner, conversation, seq) WHERE kind = 'm';
-- A user's references to a group (search joins group rows through it).
CREATE INDEX user_events_refs ON user_events (owner, ref_group, ref_gseq) WHERE ref_group IS NOT NULL;
-- Retention.
CREATE INDEX user_events_ts ON user_events (ts);
-- Search: a user's 1:1 messages holding every token.
CREATE INDEX user_events_search ON user_events USING gin (owner, tokens) WHERE tokens IS NOT NULL;

CREATE TABLE group_events (
  group_id text NOT NULL,
  gseq bigint NOT NULL,
  ts bigint NOT NULL,
  -- m message, e any other group event.
  kind char(1) NOT NULL,
  "from" text NOT NULL,
  id text,
  -- The event's JSON without its leading {.
  tail text NOT NULL,
  search_text text,
  tokens text[],
  PRIMARY KEY (group_id, gseq)
);

CREATE INDEX group_events_ts ON group_events (ts);
CREATE INDEX group_events_search ON group_events USING gin (group_id, tokens) WHERE tokens IS NOT NULL;

-- Down Migration
DROP TABLE group_events;
DROP TABLE user_events;
