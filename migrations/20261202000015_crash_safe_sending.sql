-- Crash-safe sending and recovery from lost JetStream jobs (issue 12).

-- A send the hub was killed during is "unknown" until Meta's status names it or its grace period
-- ends (next_try_at); meanwhile it holds back later messages to the same recipient, so the
-- "no earlier unsent row" check covers it too.
drop index wa_outbox_open_to_idx;
create index wa_outbox_open_to_idx on wa_outbox ((coalesce(wa_id, bsuid)), id)
    where status in ('pending', 'sending', 'unknown');
create index wa_outbox_unknown_idx on wa_outbox (next_try_at) where status = 'unknown';

-- A relayed row that is not done long after it should be lost its job: the relay's sweep finds
-- it by relayed_at and relays it again, counted here (the message id then differs).
alter table wa_inbox add column rerelays int not null default 0;
create index wa_inbox_relayed_idx on wa_inbox (relayed_at) where status = 'relayed';
