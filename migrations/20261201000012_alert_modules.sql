-- Which permission reads the alerts of a module: an alert of a module is that module's data
-- (a finance alert is finance data). The map is explicit and fails closed: an alert of a module
-- that is not listed here (HR, a typo, a new system) reaches only holders of ALERT.MANAGE, in
-- routing, in the "active alerts" answer, in the admin list and for acknowledging. SYS notices
-- (disk full, a service down) are for everyone who may read alerts.
create table ai_alert_module (
    module      varchar(10) primary key,
    read_perm   varchar(50) not null references adm_permission (code),
    created_at  timestamptz not null default now(),
    constraint ai_alert_module_chk check (module ~ '^[A-Z]{2,10}$')
);

insert into ai_alert_module (module, read_perm) values
    ('SO', 'SO.READ'),
    ('DO', 'DO.READ'),
    ('PO', 'PO.READ'),
    ('INV', 'INV.READ'),
    ('WO', 'WO.READ'),
    ('QC', 'QC.READ'),
    ('MAINT', 'MAINT.READ'),
    ('FIN', 'FIN.READ'),
    ('SYS', 'ALERT.READ');
