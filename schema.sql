-- certwatch schema. Idempotent: run it on a fresh database or on one the Python
-- predecessor used; it creates what is missing and upgrades public.alerts in place
-- without dropping a row.
--
--   psql "$POSTGRES_DSN" -v ON_ERROR_STOP=1 -f schema.sql

-- The watch list. Upstream-owned; certwatch only reads it.
CREATE TABLE IF NOT EXISTS public.intent_current (
    fqdn text NOT NULL UNIQUE
);

-- The inventory of certificates your own load balancers issued. Upstream-owned;
-- certwatch only reads it. Times are unix seconds; hex in any case, colons optional.
CREATE TABLE IF NOT EXISTS public.certs (
    fingerprint_sha1 text PRIMARY KEY,
    serial text,
    sans jsonb NOT NULL,
    not_before bigint NOT NULL,
    not_after bigint NOT NULL,
    source text,
    added_at bigint NOT NULL
);

-- Lookups by normalized fingerprint (final certificates) and by normalized serial
-- (precertificates), whatever spelling upstream writers used.
CREATE INDEX IF NOT EXISTS certs_fingerprint_norm_idx
    ON public.certs ((lower(replace(fingerprint_sha1, ':', ''))));
CREATE INDEX IF NOT EXISTS certs_serial_norm_idx
    ON public.certs ((ltrim(lower(replace(serial, ':', '')), '0')));

-- One row per alerted certificate; the only table certwatch writes.
CREATE TABLE IF NOT EXISTS public.alerts (
    id bigserial PRIMARY KEY
);

-- Columns are added one by one so that a predecessor table (id, fingerprint,
-- sans jsonb, matched jsonb, issuer, seen_at bigint, delivered, severity) gains
-- what it lacks and keeps what it has.
ALTER TABLE public.alerts
    ADD COLUMN IF NOT EXISTS issuance_key text,
    ADD COLUMN IF NOT EXISTS collision_fingerprint text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS delivery_id text,
    ADD COLUMN IF NOT EXISTS severity text,
    ADD COLUMN IF NOT EXISTS entry_type text,
    ADD COLUMN IF NOT EXISTS fingerprint_sha1 text,
    ADD COLUMN IF NOT EXISTS matched_entries text[],
    ADD COLUMN IF NOT EXISTS matched_sans text[],
    ADD COLUMN IF NOT EXISTS all_sans text[],
    ADD COLUMN IF NOT EXISTS issuer_o text,
    ADD COLUMN IF NOT EXISTS issuer_cn text,
    -- What deduplication compares between certificates of one issuance key.
    ADD COLUMN IF NOT EXISTS issuer_key_id text,
    ADD COLUMN IF NOT EXISTS subject_key_id text,
    ADD COLUMN IF NOT EXISTS issuer_dn text,
    ADD COLUMN IF NOT EXISTS subject_cn text,
    ADD COLUMN IF NOT EXISTS lease_owner text,
    ADD COLUMN IF NOT EXISTS not_before timestamptz,
    ADD COLUMN IF NOT EXISTS not_after timestamptz,
    ADD COLUMN IF NOT EXISTS lifetime_days double precision,
    ADD COLUMN IF NOT EXISTS source_log text,
    ADD COLUMN IF NOT EXISTS source_url text,
    ADD COLUMN IF NOT EXISTS cert_link text,
    ADD COLUMN IF NOT EXISTS cert_index bigint,
    ADD COLUMN IF NOT EXISTS serial text,
    ADD COLUMN IF NOT EXISTS update_type text,
    ADD COLUMN IF NOT EXISTS seen_at timestamptz,
    ADD COLUMN IF NOT EXISTS payload jsonb,
    ADD COLUMN IF NOT EXISTS event text NOT NULL DEFAULT 'match',
    ADD COLUMN IF NOT EXISTS delivered boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS delivered_targets text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS redeliveries integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS resolved_at timestamptz,
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS delivered_at timestamptz,
    -- How the certificate was found: 'feed', or 'backfill' (read from the CT log
    -- after the feed skipped its entry). A certwatch extension.
    ADD COLUMN IF NOT EXISTS detected_via text NOT NULL DEFAULT 'feed';

-- Upgrade of the predecessor's rows: its seen_at was unix seconds (bigint) and its
-- lists were jsonb. Convert the time in place and copy the lists into the typed
-- columns; the old jsonb columns stay as they were, and nothing is dropped.
DO $upgrade$
BEGIN
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'alerts'
          AND column_name = 'seen_at' AND data_type IN ('bigint', 'integer', 'double precision', 'numeric')
    ) THEN
        ALTER TABLE public.alerts
            ALTER COLUMN seen_at TYPE timestamptz USING to_timestamp(seen_at),
            ALTER COLUMN seen_at DROP NOT NULL;
        UPDATE public.alerts SET created_at = seen_at WHERE seen_at IS NOT NULL;
    END IF;

    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'alerts' AND column_name = 'fingerprint'
    ) THEN
        ALTER TABLE public.alerts ALTER COLUMN fingerprint DROP NOT NULL;
        UPDATE public.alerts
           SET fingerprint_sha1 = lower(replace(fingerprint, ':', ''))
         WHERE fingerprint_sha1 IS NULL AND fingerprint IS NOT NULL;
    END IF;

    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'alerts'
          AND column_name = 'sans' AND data_type = 'jsonb'
    ) THEN
        ALTER TABLE public.alerts ALTER COLUMN sans DROP NOT NULL;
        UPDATE public.alerts
           SET all_sans = ARRAY(SELECT jsonb_array_elements_text(sans))
         WHERE all_sans IS NULL AND jsonb_typeof(sans) = 'array';
    END IF;

    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'alerts'
          AND column_name = 'matched' AND data_type = 'jsonb'
    ) THEN
        ALTER TABLE public.alerts ALTER COLUMN matched DROP NOT NULL;
        UPDATE public.alerts
           SET matched_sans = ARRAY(SELECT jsonb_array_elements_text(matched))
         WHERE matched_sans IS NULL AND jsonb_typeof(matched) = 'array';
    END IF;

    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'alerts' AND column_name = 'issuer'
    ) THEN
        ALTER TABLE public.alerts ALTER COLUMN issuer DROP NOT NULL;
        UPDATE public.alerts SET issuer_o = issuer WHERE issuer_o IS NULL AND issuer IS NOT NULL;
    END IF;
END
$upgrade$;

-- One alert per issuance (plus one per colliding certificate): a restart or a
-- second replica does not alert again. Predecessor rows have no issuance key and
-- are not constrained (NULLs are distinct).
CREATE UNIQUE INDEX IF NOT EXISTS alerts_issuance_uidx
    ON public.alerts (issuance_key, collision_fingerprint);
CREATE INDEX IF NOT EXISTS alerts_created_at_idx ON public.alerts (created_at);
CREATE INDEX IF NOT EXISTS alerts_delivery_id_idx ON public.alerts (delivery_id);
CREATE INDEX IF NOT EXISTS alerts_undelivered_idx
    ON public.alerts (next_attempt_at) WHERE NOT delivered;

-- Triage in psql: the alerts that still need a human, newest first. A suspicious
-- alert stays here until the inventory resolves it (then `resolved` is true and the
-- row leaves once its follow-up is delivered); any alert not yet delivered to every
-- target stays until it is. `SELECT * FROM public.alerts_open LIMIT 20;`
CREATE OR REPLACE VIEW public.alerts_open AS
SELECT id,
       created_at,
       severity,
       resolved_at IS NOT NULL AS resolved,
       resolved_at,
       matched_sans AS matched_names,
       all_sans AS names,
       concat_ws(' / ', issuer_o, issuer_cn) AS issuer,
       not_before,
       not_after,
       source_log,
       cert_link,
       delivered,
       attempts,
       last_error,
       delivery_id
  FROM public.alerts
 WHERE (severity = 'suspicious' AND resolved_at IS NULL) OR NOT delivered
 ORDER BY created_at DESC, id DESC;

COMMENT ON VIEW public.alerts_open IS 'certwatch: alerts that still need a human, newest first';
COMMENT ON TABLE public.alerts IS 'certwatch: one row per alerted certificate (schema v1)';

-- Matched certificates the inventory did not know yet, waiting out
-- SUSPICIOUS_GRACE_S: written when first matched, deleted once classified, so a
-- crash (even SIGKILL) or restart loses none; a restart settles what is here.
CREATE TABLE IF NOT EXISTS public.certwatch_pending (
    issuance_key text NOT NULL,
    collision_fingerprint text NOT NULL DEFAULT '',
    due_at timestamptz NOT NULL,
    sighting jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuance_key, collision_fingerprint)
);

COMMENT ON TABLE public.certwatch_pending IS 'certwatch: matches waiting out their grace period';

-- Coverage (CT_LOG_LIST): the last log list read successfully, per source, so a
-- restart without network still knows which logs to trust and fetch from.
CREATE TABLE IF NOT EXISTS public.certwatch_log_list (
    source text PRIMARY KEY,
    body bytea NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.certwatch_log_list IS 'certwatch: the last good CT log list';

-- Per CT log, the index below which every entry was seen on the feed, fetched by
-- backfill, or logged and counted as abandoned: where a restart resumes. Shared by
-- replicas (the highest position wins), written every 10 s and at shutdown.
CREATE TABLE IF NOT EXISTS public.certwatch_log_positions (
    log_id text PRIMARY KEY,
    log_url text NOT NULL,
    position bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.certwatch_log_positions IS 'certwatch: where each CT log resumes after a restart';

-- Ranges of CT logs a replica is fetching (backfill): another replica skips a range
-- claimed and not expired, or done. Rows older than a day are deleted.
CREATE TABLE IF NOT EXISTS public.certwatch_backfill_claims (
    log_id text NOT NULL,
    start_index bigint NOT NULL,
    end_index bigint NOT NULL CHECK (end_index > start_index),
    owner text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    done boolean NOT NULL DEFAULT false,
    PRIMARY KEY (log_id, start_index, owner)
);

COMMENT ON TABLE public.certwatch_backfill_claims IS 'certwatch: CT log ranges being fetched, per replica';

-- Tailing (CT_SOURCE=logs or both): per CT log, how far reading got, verified: the
-- entries below tree_size were read and shown to belong to a tree head the log
-- signed (their compact range, `frontier`, folds into `root_hash`, or a proof from
-- the log ties them to its signed root). Reading resumes here after a restart.
CREATE TABLE IF NOT EXISTS public.certwatch_log_frontiers (
    log_id text PRIMARY KEY,
    log_url text NOT NULL,
    tree_size bigint NOT NULL CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
    frontier bytea NOT NULL CHECK (length(frontier) % 32 = 0),
    head_timestamp_ms bigint NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.certwatch_log_frontiers IS 'certwatch: where tailing each CT log resumes, verified';

-- Tailing: which replica reads each CT log; another takes over once the lease
-- has not been renewed for 30 s.
CREATE TABLE IF NOT EXISTS public.certwatch_log_leases (
    log_id text PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);

COMMENT ON TABLE public.certwatch_log_leases IS 'certwatch: which replica tails each CT log';

-- Tailing: the replicas alive (each writes its row every 10 s), so that they split
-- the logs between them; rows not written for a day are deleted.
CREATE TABLE IF NOT EXISTS public.certwatch_replicas (
    instance text PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE public.certwatch_replicas IS 'certwatch: replicas alive, to split the CT logs they tail';
