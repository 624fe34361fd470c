-- Master (dimension) tables, blueprint 1.1. Every master has a business code that is
-- unique among live rows (a soft-deleted code may be reused) and the full audit columns.

create table m_emp (
    id         bigint generated always as identity primary key,
    code       varchar(20) not null,
    name       varchar(100) not null,
    dept       varchar(50),
    position   varchar(50),
    -- null for non-shift staff
    shift      varchar(1),
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint m_emp_shift_chk check (shift in ('1', '2', '3'))
);

create unique index m_emp_code_live_uq on m_emp (code) where deleted_at is null;

-- adm_user.emp_id could not reference m_emp in the admin migration.
alter table adm_user
    add constraint adm_user_emp_id_fkey foreign key (emp_id) references m_emp (id);

create index adm_user_emp_idx on adm_user (emp_id) where emp_id is not null;

create table m_cust (
    id            bigint generated always as identity primary key,
    code          varchar(20) not null,
    name          varchar(150) not null,
    addr          varchar(255),
    segment       varchar(20) not null default 'Regular',
    credit_lim    numeric(18,2) not null default 0,
    last_order_dt date,
    created_at    timestamptz not null default now(),
    created_by    bigint references adm_user (id),
    updated_at    timestamptz not null default now(),
    updated_by    bigint references adm_user (id),
    deleted_at    timestamptz,
    deleted_by    bigint references adm_user (id),
    constraint m_cust_segment_chk check (segment in ('VIP', 'Regular')),
    constraint m_cust_credit_chk check (credit_lim >= 0)
);

create unique index m_cust_code_live_uq on m_cust (code) where deleted_at is null;
-- the bot resolves customers by (partial) name
create index m_cust_name_idx on m_cust (lower(name)) where deleted_at is null;

create table m_item (
    id         bigint generated always as identity primary key,
    code       varchar(20) not null,
    name       varchar(150) not null,
    category   varchar(50),
    std_cost   numeric(18,2) not null default 0,
    -- null for items that are not sold (raw material)
    sell_price numeric(18,2),
    uom        varchar(10) not null default 'PCS',
    -- reorder threshold for "Low" stock status and stock alerts
    min_stock  numeric(18,3) not null default 0,
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint m_item_cost_chk check (std_cost >= 0),
    constraint m_item_price_chk check (sell_price >= 0),
    constraint m_item_min_chk check (min_stock >= 0)
);

create unique index m_item_code_live_uq on m_item (code) where deleted_at is null;
create index m_item_name_idx on m_item (lower(name)) where deleted_at is null;

create table m_vendor (
    id            bigint generated always as identity primary key,
    code          varchar(20) not null,
    name          varchar(150) not null,
    addr          varchar(255),
    bank_acc      varchar(50),
    -- percentages 0..100
    otd_score     numeric(5,2),
    quality_score numeric(5,2),
    created_at    timestamptz not null default now(),
    created_by    bigint references adm_user (id),
    updated_at    timestamptz not null default now(),
    updated_by    bigint references adm_user (id),
    deleted_at    timestamptz,
    deleted_by    bigint references adm_user (id),
    constraint m_vendor_otd_chk check (otd_score between 0 and 100),
    constraint m_vendor_quality_chk check (quality_score between 0 and 100)
);

create unique index m_vendor_code_live_uq on m_vendor (code) where deleted_at is null;
create index m_vendor_name_idx on m_vendor (lower(name)) where deleted_at is null;

create table m_machine (
    id            bigint generated always as identity primary key,
    code          varchar(20) not null,
    name          varchar(100) not null,
    location      varchar(100),
    cap_per_hr    numeric(12,2),
    run_hours     numeric(12,2) not null default 0,
    last_maint_dt date,
    created_at    timestamptz not null default now(),
    created_by    bigint references adm_user (id),
    updated_at    timestamptz not null default now(),
    updated_by    bigint references adm_user (id),
    deleted_at    timestamptz,
    deleted_by    bigint references adm_user (id),
    constraint m_machine_cap_chk check (cap_per_hr >= 0),
    constraint m_machine_hours_chk check (run_hours >= 0)
);

create unique index m_machine_code_live_uq on m_machine (code) where deleted_at is null;

create table m_wh (
    id          bigint generated always as identity primary key,
    code        varchar(20) not null,
    name        varchar(100) not null,
    -- single-letter zone (A/B/C in the blueprint)
    zone        varchar(1),
    capacity_m3 numeric(12,2),
    created_at  timestamptz not null default now(),
    created_by  bigint references adm_user (id),
    updated_at  timestamptz not null default now(),
    updated_by  bigint references adm_user (id),
    deleted_at  timestamptz,
    deleted_by  bigint references adm_user (id),
    constraint m_wh_zone_chk check (zone ~ '^[A-Z]$'),
    constraint m_wh_capacity_chk check (capacity_m3 >= 0)
);

create unique index m_wh_code_live_uq on m_wh (code) where deleted_at is null;

create trigger set_updated_at before update on m_emp
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on m_cust
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on m_item
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on m_vendor
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on m_machine
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on m_wh
    for each row execute function trigger_set_timestamp();
