-- Transaction (fact) tables and immutable logs, blueprint 1.2.
-- Every t_* table carries the full audit columns and soft delete; money is numeric(18,2),
-- quantities numeric(18,3), percentages numeric(5,2). Document numbers (doc_no, e.g.
-- SO-202412-0001) are unique for ever, also across soft-deleted rows: numbers are never reused.

create table t_so (
    id          bigint generated always as identity primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    doc_no      varchar(20) not null unique,
    cust_id     bigint not null references m_cust (id),
    order_dt    date not null,
    deadline_dt date,
    total_amt   numeric(18,2) not null default 0,
    disc_pct    numeric(5,2) not null default 0,
    status      varchar(20) not null default 'Draft',
    approved_by bigint references adm_user (id),
    approved_at timestamptz,
    created_at  timestamptz not null default now(),
    created_by  bigint references adm_user (id),
    updated_at  timestamptz not null default now(),
    updated_by  bigint references adm_user (id),
    deleted_at  timestamptz,
    deleted_by  bigint references adm_user (id),
    constraint t_so_status_chk check (status in ('Draft', 'Pending', 'Approved', 'Open', 'Closed', 'Cancel')),
    constraint t_so_total_chk check (total_amt >= 0),
    constraint t_so_disc_chk check (disc_pct between 0 and 100),
    constraint t_so_deadline_chk check (deadline_dt >= order_dt)
);

create index t_so_order_dt_idx on t_so (order_dt) where deleted_at is null;
create index t_so_cust_idx on t_so (cust_id, order_dt) where deleted_at is null;
create index t_so_status_idx on t_so (status, order_dt) where deleted_at is null;

create table t_so_detail (
    id         bigint generated always as identity primary key,
    so_id      bigint not null references t_so (id) on delete cascade,
    item_id    bigint not null references m_item (id),
    qty        numeric(18,3) not null,
    unit_price numeric(18,2) not null default 0,
    disc_pct   numeric(5,2) not null default 0,
    -- line subtotal after line discount (sample data "subtotal")
    line_amt   numeric(18,2) generated always as (round(qty * unit_price * (1 - disc_pct / 100), 2)) stored,
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_so_detail_uq unique (so_id, item_id),
    constraint t_so_detail_qty_chk check (qty >= 0),
    constraint t_so_detail_price_chk check (unit_price >= 0),
    constraint t_so_detail_disc_chk check (disc_pct between 0 and 100)
);

create index t_so_detail_item_idx on t_so_detail (item_id) where deleted_at is null;

create table t_do (
    id          bigint generated always as identity primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    doc_no      varchar(20) not null unique,
    so_id       bigint not null references t_so (id),
    driver_id   bigint references m_emp (id),
    -- free-text driver (external drivers are not employees)
    driver_name varchar(100),
    ship_dt     date,
    eta_dt      date,
    actual_dt   date,
    status      varchar(20) not null default 'Pending',
    created_at  timestamptz not null default now(),
    created_by  bigint references adm_user (id),
    updated_at  timestamptz not null default now(),
    updated_by  bigint references adm_user (id),
    deleted_at  timestamptz,
    deleted_by  bigint references adm_user (id),
    constraint t_do_status_chk check (status in ('Pending', 'Shipped', 'In Transit', 'Delivered', 'Cancel'))
);

create index t_do_so_idx on t_do (so_id) where deleted_at is null;
create index t_do_ship_dt_idx on t_do (ship_dt) where deleted_at is null;
create index t_do_status_idx on t_do (status, eta_dt) where deleted_at is null;
create index t_do_driver_idx on t_do (driver_id) where driver_id is not null;

create table t_po (
    id          bigint generated always as identity primary key,
    uuid        uuid not null default gen_random_uuid() unique,
    doc_no      varchar(20) not null unique,
    vendor_id   bigint not null references m_vendor (id),
    order_dt    date not null,
    total_amt   numeric(18,2) not null default 0,
    status      varchar(20) not null default 'Draft',
    approved_by bigint references adm_user (id),
    approved_at timestamptz,
    created_at  timestamptz not null default now(),
    created_by  bigint references adm_user (id),
    updated_at  timestamptz not null default now(),
    updated_by  bigint references adm_user (id),
    deleted_at  timestamptz,
    deleted_by  bigint references adm_user (id),
    constraint t_po_status_chk check (status in ('Draft', 'Pending Director', 'Approved', 'Received', 'Cancel')),
    constraint t_po_total_chk check (total_amt >= 0)
);

create index t_po_order_dt_idx on t_po (order_dt) where deleted_at is null;
create index t_po_vendor_idx on t_po (vendor_id, order_dt) where deleted_at is null;
create index t_po_status_idx on t_po (status, order_dt) where deleted_at is null;

create table t_po_detail (
    id         bigint generated always as identity primary key,
    po_id      bigint not null references t_po (id) on delete cascade,
    item_id    bigint not null references m_item (id),
    qty        numeric(18,3) not null,
    unit_price numeric(18,2) not null default 0,
    line_amt   numeric(18,2) generated always as (round(qty * unit_price, 2)) stored,
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_po_detail_uq unique (po_id, item_id),
    constraint t_po_detail_qty_chk check (qty >= 0),
    constraint t_po_detail_price_chk check (unit_price >= 0)
);

create index t_po_detail_item_idx on t_po_detail (item_id) where deleted_at is null;

create table t_wo (
    id         bigint generated always as identity primary key,
    uuid       uuid not null default gen_random_uuid() unique,
    doc_no     varchar(20) not null unique,
    item_id    bigint not null references m_item (id),
    machine_id bigint not null references m_machine (id),
    start_dt   date,
    end_dt     date,
    plan_qty   numeric(18,3) not null default 0,
    actual_qty numeric(18,3) not null default 0,
    reject_qty numeric(18,3) not null default 0,
    status     varchar(20) not null default 'Scheduled',
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_wo_status_chk check (status in ('Scheduled', 'In Progress', 'Completed', 'Cancel')),
    constraint t_wo_qty_chk check (plan_qty >= 0 and actual_qty >= 0 and reject_qty >= 0),
    constraint t_wo_dates_chk check (end_dt >= start_dt)
);

create index t_wo_machine_idx on t_wo (machine_id, start_dt) where deleted_at is null;
create index t_wo_start_dt_idx on t_wo (start_dt) where deleted_at is null;
create index t_wo_item_idx on t_wo (item_id) where deleted_at is null;
create index t_wo_status_idx on t_wo (status) where deleted_at is null;

-- Current stock per item and warehouse (one row per pair).
create table t_inv (
    id           bigint generated always as identity primary key,
    item_id      bigint not null references m_item (id),
    wh_id        bigint not null references m_wh (id),
    qty_on_hand  numeric(18,3) not null default 0,
    -- may exceed qty_on_hand: that is the "oversold" situation the bot reports
    qty_reserved numeric(18,3) not null default 0,
    last_move_dt date,
    created_at   timestamptz not null default now(),
    created_by   bigint references adm_user (id),
    updated_at   timestamptz not null default now(),
    updated_by   bigint references adm_user (id),
    deleted_at   timestamptz,
    deleted_by   bigint references adm_user (id),
    constraint t_inv_uq unique (item_id, wh_id),
    constraint t_inv_qty_chk check (qty_on_hand >= 0 and qty_reserved >= 0)
);

create index t_inv_wh_idx on t_inv (wh_id) where deleted_at is null;

create table t_inv_move (
    id         bigint generated always as identity primary key,
    item_id    bigint not null references m_item (id),
    wh_from    bigint references m_wh (id),
    wh_to      bigint references m_wh (id),
    qty        numeric(18,3) not null,
    move_type  varchar(10) not null,
    -- source document (SO/DO/PO/WO number); null for manual adjustments
    ref_doc    varchar(20),
    move_at    timestamptz not null default now(),
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    -- nulls are distinct: moves without ref_doc never collide
    constraint t_inv_move_uq unique (ref_doc, item_id, move_type),
    constraint t_inv_move_type_chk check (move_type in ('IN', 'OUT', 'TRANSFER')),
    constraint t_inv_move_qty_chk check (qty >= 0),
    constraint t_inv_move_wh_chk check (
        (move_type = 'IN' and wh_to is not null)
        or (move_type = 'OUT' and wh_from is not null)
        or (move_type = 'TRANSFER' and wh_from is not null and wh_to is not null and wh_from <> wh_to)
    )
);

create index t_inv_move_item_idx on t_inv_move (item_id, move_at) where deleted_at is null;
create index t_inv_move_at_idx on t_inv_move (move_at) where deleted_at is null;
create index t_inv_move_from_idx on t_inv_move (wh_from) where wh_from is not null;
create index t_inv_move_to_idx on t_inv_move (wh_to) where wh_to is not null;

create table t_ar (
    id         bigint generated always as identity primary key,
    uuid       uuid not null default gen_random_uuid() unique,
    so_id      bigint references t_so (id),
    cust_id    bigint not null references m_cust (id),
    amt        numeric(18,2) not null,
    due_dt     date not null,
    paid_dt    date,
    status     varchar(10) not null default 'Open',
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_ar_status_chk check (status in ('Open', 'Paid', 'Overdue')),
    constraint t_ar_amt_chk check (amt >= 0)
);

-- one receivable per sales order
create unique index t_ar_so_uq on t_ar (so_id) where so_id is not null;
create index t_ar_due_idx on t_ar (due_dt) where deleted_at is null and status <> 'Paid';
create index t_ar_status_idx on t_ar (status, due_dt) where deleted_at is null;
create index t_ar_cust_idx on t_ar (cust_id, due_dt) where deleted_at is null;

create table t_ap (
    id         bigint generated always as identity primary key,
    uuid       uuid not null default gen_random_uuid() unique,
    po_id      bigint references t_po (id),
    vendor_id  bigint not null references m_vendor (id),
    amt        numeric(18,2) not null,
    due_dt     date not null,
    paid_dt    date,
    status     varchar(10) not null default 'Open',
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_ap_status_chk check (status in ('Open', 'Paid', 'Overdue')),
    constraint t_ap_amt_chk check (amt >= 0)
);

-- one payable per purchase order
create unique index t_ap_po_uq on t_ap (po_id) where po_id is not null;
create index t_ap_due_idx on t_ap (due_dt) where deleted_at is null and status <> 'Paid';
create index t_ap_status_idx on t_ap (status, due_dt) where deleted_at is null;
create index t_ap_vendor_idx on t_ap (vendor_id, due_dt) where deleted_at is null;

create table t_maint (
    id         bigint generated always as identity primary key,
    machine_id bigint not null references m_machine (id),
    maint_dt   date not null,
    maint_type varchar(12) not null,
    cost       numeric(18,2) not null default 0,
    notes      text,
    created_at timestamptz not null default now(),
    created_by bigint references adm_user (id),
    updated_at timestamptz not null default now(),
    updated_by bigint references adm_user (id),
    deleted_at timestamptz,
    deleted_by bigint references adm_user (id),
    constraint t_maint_uq unique (machine_id, maint_dt, maint_type),
    constraint t_maint_type_chk check (maint_type in ('Preventive', 'Corrective')),
    constraint t_maint_cost_chk check (cost >= 0)
);

create index t_maint_dt_idx on t_maint (maint_dt) where deleted_at is null;

create table t_qc (
    id           bigint generated always as identity primary key,
    wo_id        bigint not null references t_wo (id),
    check_dt     date not null,
    sample_size  int not null default 0,
    defect_count int not null default 0,
    grade        varchar(6),
    notes        text,
    created_at   timestamptz not null default now(),
    created_by   bigint references adm_user (id),
    updated_at   timestamptz not null default now(),
    updated_by   bigint references adm_user (id),
    deleted_at   timestamptz,
    deleted_by   bigint references adm_user (id),
    constraint t_qc_uq unique (wo_id, check_dt),
    constraint t_qc_grade_chk check (grade in ('A', 'B', 'C', 'Reject')),
    constraint t_qc_count_chk check (sample_size >= 0 and defect_count >= 0 and defect_count <= sample_size)
);

create index t_qc_check_dt_idx on t_qc (check_dt) where deleted_at is null;

create table t_shift_log (
    id           bigint generated always as identity primary key,
    machine_id   bigint not null references m_machine (id),
    -- operator; null when logged by someone without an employee record
    emp_id       bigint references m_emp (id),
    log_dt       date not null,
    shift        varchar(1) not null,
    output_qty   numeric(18,3) not null default 0,
    reject_qty   numeric(18,3) not null default 0,
    downtime_min int not null default 0,
    error_code   varchar(20),
    created_at   timestamptz not null default now(),
    created_by   bigint references adm_user (id),
    updated_at   timestamptz not null default now(),
    updated_by   bigint references adm_user (id),
    deleted_at   timestamptz,
    deleted_by   bigint references adm_user (id),
    -- also serves lookups by (machine_id, log_dt)
    constraint t_shift_log_uq unique (machine_id, log_dt, shift),
    constraint t_shift_log_shift_chk check (shift in ('1', '2', '3')),
    constraint t_shift_log_qty_chk check (output_qty >= 0 and reject_qty >= 0),
    -- a shift is 8 hours; allow a full day for safety
    constraint t_shift_log_down_chk check (downtime_min between 0 and 1440)
);

create index t_shift_log_dt_idx on t_shift_log (log_dt) where deleted_at is null;
create index t_shift_log_emp_idx on t_shift_log (emp_id, log_dt) where emp_id is not null;

-- Immutable status history of documents (polymorphic entity, hence no FK on entity_id).
create table log_status (
    id           bigint generated always as identity primary key,
    entity_type  varchar(10) not null,
    entity_id    bigint not null,
    old_status   varchar(20),
    new_status   varchar(20) not null,
    changed_at   timestamptz not null default now(),
    changed_by   bigint references adm_user (id),
    -- minutes spent in old_status
    duration_min int,
    notes        text,
    constraint log_status_uq unique (entity_type, entity_id, new_status, changed_at),
    constraint log_status_type_chk check (entity_type in ('SO', 'DO', 'PO', 'WO', 'AR', 'AP')),
    constraint log_status_dur_chk check (duration_min >= 0)
);

create index log_status_changed_idx on log_status (changed_at);

-- SLA tracking: written once, completed once (completed_at/actual_min/is_breached); no updated_at.
create table log_sla (
    id           bigint generated always as identity primary key,
    entity_type  varchar(10) not null,
    entity_id    bigint not null,
    sla_type     varchar(12) not null,
    start_at     timestamptz not null,
    target_at    timestamptz not null,
    completed_at timestamptz,
    target_min   int,
    actual_min   int,
    is_breached  boolean not null default false,
    created_at   timestamptz not null default now(),
    constraint log_sla_uq unique (entity_type, entity_id, sla_type),
    constraint log_sla_type_chk check (entity_type in ('SO', 'DO', 'PO', 'WO')),
    constraint log_sla_sla_chk check (sla_type in ('Approval', 'Processing', 'Delivery')),
    constraint log_sla_target_chk check (target_at >= start_at),
    constraint log_sla_min_chk check (target_min >= 0 and actual_min >= 0)
);

-- open SLAs ordered by deadline (breach detector)
create index log_sla_open_idx on log_sla (target_at) where completed_at is null;

create trigger set_updated_at before update on t_so
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_so_detail
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_do
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_po
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_po_detail
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_wo
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_inv
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_inv_move
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_ar
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_ap
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_maint
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_qc
    for each row execute function trigger_set_timestamp();
create trigger set_updated_at before update on t_shift_log
    for each row execute function trigger_set_timestamp();
