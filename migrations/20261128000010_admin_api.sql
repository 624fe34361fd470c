-- Admin REST API: device revocation, alert routing rules, indexes for the admin lists.

-- "Revoke WhatsApp device": trust confirmed before this moment is void (the identity migration
-- adds the same column; whichever runs first creates it).
alter table adm_user add column if not exists wa_revoked_at timestamptz;

-- Who receives an alert: a rule maps a module (null = every module) and a minimum severity to a
-- role; every active user of that role receives the alerts that match.
create table ai_alert_rule (
    id           bigint generated always as identity primary key,
    uuid         uuid not null default gen_random_uuid() unique,
    module       varchar(10),
    min_severity varchar(10) not null default 'Low',
    role_id      bigint not null references adm_role (id) on delete cascade,
    is_active    boolean not null default true,
    created_at   timestamptz not null default now(),
    created_by   bigint references adm_user (id),
    updated_at   timestamptz not null default now(),
    updated_by   bigint references adm_user (id),
    constraint ai_alert_rule_module_chk check (module is null or module ~ '^[A-Z]{2,10}$'),
    constraint ai_alert_rule_severity_chk check (min_severity in ('Low', 'Medium', 'High', 'Critical'))
);

-- One rule per (module or "every module", severity, role).
create unique index ai_alert_rule_uq on ai_alert_rule (coalesce(module, '*'), min_severity, role_id);

create trigger set_updated_at before update on ai_alert_rule
    for each row execute function trigger_set_timestamp();

-- Sensible defaults, matching the seeded roles: the directors hear about everything serious,
-- each manager about their own area, the admins about the system.
insert into ai_alert_rule (module, min_severity, role_id)
select v.module, v.min_severity, r.id
from (values
    (null, 'High', 'DIRECTOR'),
    ('SO', 'Medium', 'MANAGER_SALES'),
    ('DO', 'Medium', 'MANAGER_SALES'),
    ('FIN', 'High', 'MANAGER_SALES'),
    ('WO', 'Medium', 'MANAGER_PROD'),
    ('QC', 'Medium', 'MANAGER_PROD'),
    ('MAINT', 'Medium', 'MANAGER_PROD'),
    ('SYS', 'Medium', 'SYSADMIN')
) as v (module, min_severity, role_code)
join adm_role r on r.code = v.role_code
on conflict do nothing;

-- Audit log filters: by action and by the exposed id of the entity.
create index log_audit_action_idx on log_audit (action, created_at);
create index log_audit_entity_uuid_idx on log_audit (entity_uuid) where entity_uuid is not null;
