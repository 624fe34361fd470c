-- AI & insight tables, blueprint 1.5. Keys follow 1.6 (identity id + uuid where exposed)
-- instead of the blueprint's UUID / VARCHAR primary keys.

create table ai_insight (
    id           bigint generated always as identity primary key,
    uuid         uuid not null default gen_random_uuid() unique,
    module       varchar(10) not null,
    risk         varchar(10) not null,
    -- snapshot of the data the analysis was based on
    context_json jsonb not null default '{}'::jsonb,
    reasoning    text,
    is_resolved  boolean not null default false,
    resolved_at  timestamptz,
    resolved_by  bigint references adm_user (id),
    -- optional idempotency key for producers (e.g. 'reject-rate:MCH-003:2024-12-27')
    dedup_key    varchar(100) unique,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint ai_insight_module_chk check (module in ('SO', 'PO', 'WO', 'DO', 'INV', 'WH', 'FIN', 'HR', 'QC', 'MAINT')),
    constraint ai_insight_risk_chk check (risk in ('Low', 'Medium', 'High', 'Critical'))
);

create index ai_insight_created_idx on ai_insight (created_at);
create index ai_insight_open_idx on ai_insight (module, created_at) where not is_resolved;

-- One row per inbound WhatsApp message and its answer.
create table ai_chat (
    id          bigint generated always as identity primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    -- null for unknown senders
    user_id     bigint references adm_user (id) on delete set null,
    -- E.164; null when Meta sent only the business-scoped user id
    phone       varchar(16),
    bsuid       varchar(64),
    -- role code of the sender at the time of the message
    user_role   varchar(30),
    msg_in      text,
    msg_out     text,
    intent      varchar(50),
    tokens_used int not null default 0,
    latency_ms  int,
    outcome     varchar(10),
    wamid_in    varchar(128) unique,
    wamid_out   varchar(128),
    ts          timestamptz not null default now(),
    constraint ai_chat_phone_chk check (phone is null or phone ~ '^\+[1-9][0-9]{7,14}$'),
    constraint ai_chat_outcome_chk check (outcome in ('llm', 'fallback', 'denied', 'clarify', 'refused', 'error')),
    constraint ai_chat_tokens_chk check (tokens_used >= 0),
    constraint ai_chat_latency_chk check (latency_ms >= 0)
);

create index ai_chat_phone_idx on ai_chat (phone, ts);
create index ai_chat_user_idx on ai_chat (user_id, ts);
-- retention (90 days) and dashboards
create index ai_chat_ts_idx on ai_chat (ts);

create table ai_alert (
    id         bigint generated always as identity primary key,
    uuid       uuid not null default gen_random_uuid() unique,
    -- SO/PO/WO/DO/INV/FIN/QC/MAINT/SYS/...
    module     varchar(10) not null,
    -- ANOMALY/CASHFLOW/OVERDUE/STOCK/... (upper-case, open list)
    alert_type varchar(30) not null,
    severity   varchar(10) not null,
    message    text not null,
    channel    varchar(10) not null default 'WA',
    is_sent    boolean not null default false,
    sent_at    timestamptz,
    is_read    boolean not null default false,
    acked_at   timestamptz,
    acked_by   bigint references adm_user (id),
    payload    jsonb not null default '{}'::jsonb,
    -- optional idempotency key so a detector does not raise the same alert twice
    dedup_key  varchar(100) unique,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- alerts also arrive from other services (NATS alerts.new): keep the module list open
    constraint ai_alert_module_chk check (module ~ '^[A-Z]{2,10}$'),
    constraint ai_alert_type_chk check (alert_type ~ '^[A-Z][A-Z0-9_]*$'),
    constraint ai_alert_severity_chk check (severity in ('Low', 'Medium', 'High', 'Critical')),
    constraint ai_alert_channel_chk check (channel in ('WA', 'Email', 'Dashboard'))
);

create index ai_alert_created_idx on ai_alert (created_at);
-- dispatcher: alerts still to send
create index ai_alert_unsent_idx on ai_alert (created_at) where not is_sent;
-- "active alerts": not yet acknowledged
create index ai_alert_open_idx on ai_alert (severity, created_at) where acked_at is null;

create table ai_rfm (
    id              bigint generated always as identity primary key,
    cust_id         bigint not null references m_cust (id),
    calc_dt         date not null,
    recency_days    int not null,
    frequency_count int not null,
    monetary_total  numeric(18,2) not null,
    segment         varchar(10) not null,
    created_at      timestamptz not null default now(),
    constraint ai_rfm_uq unique (cust_id, calc_dt),
    constraint ai_rfm_segment_chk check (segment in ('VIP', 'Loyal', 'AtRisk', 'Lost')),
    constraint ai_rfm_values_chk check (recency_days >= 0 and frequency_count >= 0 and monetary_total >= 0)
);

create index ai_rfm_calc_dt_idx on ai_rfm (calc_dt);

create table ai_vendor_score (
    id            bigint generated always as identity primary key,
    vendor_id     bigint not null references m_vendor (id),
    calc_dt       date not null,
    otd_score     numeric(5,2),
    quality_score numeric(5,2),
    price_trend   varchar(6),
    -- scraped news summary
    risk_news     text,
    created_at    timestamptz not null default now(),
    constraint ai_vendor_score_uq unique (vendor_id, calc_dt),
    constraint ai_vendor_score_otd_chk check (otd_score between 0 and 100),
    constraint ai_vendor_score_quality_chk check (quality_score between 0 and 100),
    constraint ai_vendor_score_trend_chk check (price_trend in ('Up', 'Down', 'Stable'))
);

create index ai_vendor_score_calc_dt_idx on ai_vendor_score (calc_dt);

create trigger set_updated_at before update on ai_insight
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on ai_alert
    for each row execute function trigger_set_timestamp();
