-- Proactive alerts to phones: who each alert went to, and the outbox rows that carry them.

-- An alert travels as an outbox row of purpose 'alert', one per recipient. A row still waiting
-- (a mute, a retry) is 'withdrawn' instead of sent when the alert was acknowledged meanwhile or
-- the recipient lost the device trust or the permission.
alter table wa_outbox drop constraint wa_outbox_purpose_chk;
alter table wa_outbox add constraint wa_outbox_purpose_chk
    check (purpose in ('answer', 'gate', 'alert'));
alter table wa_outbox drop constraint wa_outbox_status_chk;
alter table wa_outbox add constraint wa_outbox_status_chk check (
    status in ('pending', 'sending', 'sent', 'delivered', 'read', 'failed', 'unknown', 'withdrawn'));

-- The dispatcher's work list holds only alerts it may push.
drop index ai_alert_unsent_idx;
create index ai_alert_unsent_idx on ai_alert (created_at) where not is_sent and channel = 'WA';

-- Unreadable alerts from NATS are kept raw, like unreadable webhook deliveries.
alter table wa_dead_letter drop constraint wa_dead_letter_source_chk;
alter table wa_dead_letter add constraint wa_dead_letter_source_chk
    check (source in ('webhook', 'consumer', 'alerts'));

-- One row per (alert, user) the dispatcher routed it to: an alert reaches a user at most once,
-- whatever is redelivered or retried. The delivery itself (sent, delivered, read, failed) is the
-- status of the outbox row.
create table ai_alert_recipient (
    id         bigint generated always as identity primary key,
    alert_id   bigint not null references ai_alert (id) on delete cascade,
    user_id    bigint not null references adm_user (id),
    -- the sender's check before a waiting alert goes out looks the row up by it
    outbox_id  bigint not null references wa_outbox (id),
    created_at timestamptz not null default now(),
    constraint ai_alert_recipient_uq unique (alert_id, user_id),
    constraint ai_alert_recipient_outbox_uq unique (outbox_id)
);

-- The detectors raise stock alerts (INV, Medium when oversold) and overdue receivables (FIN,
-- Medium): the managers who read that data hear of them by default. Sales' seeded finance rule
-- (from High) comes down to Medium unless an admin has changed it.
insert into ai_alert_rule (module, min_severity, role_id)
select v.module, v.min_severity, r.id
from (values
    ('INV', 'Medium', 'MANAGER_SALES'),
    ('INV', 'Medium', 'MANAGER_PROD')
) as v (module, min_severity, role_code)
join adm_role r on r.code = v.role_code
on conflict do nothing;

update ai_alert_rule a set min_severity = 'Medium'
from adm_role r
where r.id = a.role_id and r.code = 'MANAGER_SALES' and a.module = 'FIN'
  and a.min_severity = 'High' and a.created_by is null and a.updated_by is null
  and not exists (
      select 1 from ai_alert_rule b where b.role_id = a.role_id and b.module = 'FIN'
        and b.min_severity = 'Medium');
