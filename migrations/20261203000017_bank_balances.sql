-- Bank account balances (the executive summary's cash position and the 7-day cash outlook):
-- one row per account per day, loaded by the ETL from the bank statements like the other
-- transaction tables. An account's balance on a day is its latest row on or before that day.
-- A balance may be negative (an overdraft).
create table t_bank_bal (
    id         bigint generated always as identity primary key,
    bank_acc   varchar(30) not null,
    bank_name  varchar(50) not null,
    bal_dt     date not null,
    bal_amt    numeric(18,2) not null,
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_bank_bal_uq unique (bank_acc, bal_dt),
    constraint t_bank_bal_acc_chk check (bank_acc ~ '^[0-9A-Za-z-]+$')
);

-- the latest balance of each account on or before a day
create index t_bank_bal_latest_idx on t_bank_bal (bank_acc, bal_dt desc) include (bank_name, bal_amt)
    where deleted_at is null;
