-- The brain: released messages go round the pipeline again; alert mutes.

-- Bumped when a held message is released after its device is confirmed: the relay publishes it
-- again under a new JetStream message id (the first one is still in the duplicate window).
alter table wa_inbox add column relay_gen int not null default 0;

-- "Mute alerts for 2 hours": proactive alerts to this user wait until then.
create table wa_alert_mute (
    user_id    bigint primary key references adm_user (id),
    until_at   timestamptz not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create trigger set_updated_at
    before update on wa_alert_mute
    for each row
    execute function trigger_set_timestamp();
