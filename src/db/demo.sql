-- Demo data for sentient-hub: the blueprint's sample data (section 1.8) plus a deterministic
-- generated history from 13 months ago up to and including today (Asia/Jakarta).
--
-- Runs inside ONE transaction (src/db/demo.rs). Idempotent: every insert is
-- `on conflict ... do nothing` on a natural key (doc_no, code, unique pairs), so a second run
-- adds nothing and a run on a later day adds only the new days. Deterministic: all variation
-- comes from md5 hashes of the date and a slot, never from random().
--
-- Each generated row gets its status as of the day it is first inserted; later runs never
-- update existing rows (except the derived columns m_machine.last_maint_dt,
-- m_cust.last_order_dt and t_inv.last_move_dt, which only move forward).
--
-- Scratch objects live in pg_temp (session-private) and are dropped at the end.

-- the scratch tables have no statistics, so the planner overestimates them; JIT compilation would
-- then cost more than the whole script (transaction-local setting)
set local jit = off;

-- ---------------------------------------------------------------------------------------------
-- helpers: hash -> int in [0, 2^28), hash -> numeric in [0, 1), Jakarta local time -> timestamptz
-- ---------------------------------------------------------------------------------------------
create or replace function pg_temp.demo_h(seed text) returns int
    language sql immutable
    as $$ select ('x' || substr(md5(seed), 1, 7))::bit(28)::int $$;

create or replace function pg_temp.demo_u(seed text) returns numeric
    language sql immutable
    as $$ select round(pg_temp.demo_h(seed) / 268435456.0, 6) $$;

create or replace function pg_temp.demo_ts(d date, t interval) returns timestamptz
    language sql stable
    as $$ select (d + t) at time zone 'Asia/Jakarta' $$;

-- today in Jakarta, the window start (13 months back), the first Monday of the window and the
-- Monday of next week (work orders are weekly; next week's are already scheduled)
create temp table demo_ctx as
select t.today,
       (t.today - interval '13 months')::date as start_dt,
       (t.today - interval '13 months')::date
           + (8 - extract(isodow from (t.today - interval '13 months'))::int) % 7 as first_mon,
       t.today - extract(isodow from t.today)::int + 8 as next_mon
from (select (now() at time zone 'Asia/Jakarta')::date as today) as t;

-- one row per calendar day of the window
create temp table demo_day as
select x.d,
       to_char(x.d, 'YYYYMMDD') as ymd,
       to_char(x.d, 'YYYYMM') as ym,
       extract(day from x.d)::int as dom,
       extract(isodow from x.d)::int as dow,
       c.today - x.d as age
from demo_ctx c
cross join lateral (select c.start_dt + i as d from generate_series(0, c.today - c.start_dt) as i) as x;

-- =============================================================================================
-- A. masters (blueprint 1.8 A)
-- =============================================================================================

-- employees: drivers, one operator per machine and shift, QC, sales, finance, maintenance
insert into m_emp (code, name, dept, position, shift)
values
    ('EMP-001', 'Budi Santoso', 'Logistics', 'Driver', null),
    ('EMP-002', 'Joko Susilo', 'Logistics', 'Driver', null),
    ('EMP-003', 'Agus Setiawan', 'Production', 'Operator CNC', '1'),
    ('EMP-004', 'Dedi Kurniawan', 'Production', 'Operator Injection', '1'),
    ('EMP-005', 'Rudi Hartono', 'Production', 'Operator Welding', '1'),
    ('EMP-006', 'Siti Rahayu', 'Production', 'Operator CNC', '2'),
    ('EMP-007', 'Eko Prasetyo', 'Production', 'Operator Injection', '2'),
    ('EMP-008', 'Wahyu Nugroho', 'Production', 'Operator Welding', '2'),
    ('EMP-009', 'Dewi Lestari', 'Production', 'Operator CNC', '3'),
    ('EMP-010', 'Bambang Susanto', 'Production', 'Operator Injection', '3'),
    ('EMP-011', 'Heru Gunawan', 'Production', 'Operator Welding', '3'),
    ('EMP-012', 'Rina Marlina', 'QC', 'QC Inspector', '1'),
    ('EMP-013', 'Andi Saputra', 'Sales', 'Sales Executive', null),
    ('EMP-014', 'Lina Kurniawati', 'Finance', 'Staff AR/AP', null),
    ('EMP-015', 'Yoga Pratama', 'Production', 'Teknisi Maintenance', null)
on conflict (code) where deleted_at is null do nothing;

insert into m_cust (code, name, addr, segment, credit_lim)
values
    ('CUST-001', 'PT ABC Manufacturing', 'Jl. Industri Raya No. 12, Kawasan MM2100, Cikarang Barat, Bekasi 17530', 'VIP', 500000000),
    ('CUST-002', 'CV XYZ Trading', 'Jl. Mangga Dua Raya No. 45, Sawah Besar, Jakarta Pusat 10730', 'Regular', 100000000),
    ('CUST-003', 'PT Maju Jaya', 'Jl. Rungkut Industri III No. 8, Surabaya 60293', 'VIP', 750000000),
    ('CUST-004', 'UD Sentosa', 'Jl. Jenderal Ahmad Yani No. 77, Semarang 50241', 'Regular', 50000000),
    ('CUST-005', 'PT Global Tech', 'Kawasan Industri Jababeka II Blok C-5, Cikarang, Bekasi 17550', 'VIP', 1000000000)
on conflict (code) where deleted_at is null do nothing;

-- min_stock makes Assembly Kit B and Steel Plate "Low" (on hand and available), the rest OK
insert into m_item (code, name, category, std_cost, sell_price, uom, min_stock)
values
    ('ITM-001', 'Widget Pro X1', 'Finished Goods', 45000, 65000, 'PCS', 1000),
    ('ITM-002', 'Component Alpha', 'Raw Material', 12500, null, 'KG', 500),
    ('ITM-003', 'Assembly Kit B', 'WIP', 85000, 125000, 'SET', 400),
    ('ITM-004', 'Steel Plate 3mm', 'Raw Material', 75000, null, 'LBR', 200),
    ('ITM-005', 'Motor DC 12V', 'Component', 150000, 220000, 'PCS', 500)
on conflict (code) where deleted_at is null do nothing;

insert into m_vendor (code, name, addr, bank_acc, otd_score, quality_score)
values
    ('VND-001', 'PT Baja Makmur', 'Cikarang, Bekasi', 'BCA 523-0187-441', 92.5, 88.0),
    ('VND-002', 'CV Jaya Abadi', 'Tangerang', 'Mandiri 155-00-0923417-2', 85.0, 91.0),
    ('VND-003', 'PT Global Supply', 'Surabaya', 'BNI 0291-884-530', 78.5, 82.0)
on conflict (code) where deleted_at is null do nothing;

insert into m_machine (code, name, location, cap_per_hr, run_hours)
values
    ('MCH-001', 'CNC Milling A1', 'Plant 1 - Line A', 120, 8540),
    ('MCH-002', 'Injection Molding B2', 'Plant 1 - Line B', 200, 12350),
    ('MCH-003', 'Welding Robot C1', 'Plant 2', 80, 5200)
on conflict (code) where deleted_at is null do nothing;

insert into m_wh (code, name, zone, capacity_m3)
values
    ('WH-A1', 'Gudang Bahan Baku', 'A', 5000),
    ('WH-B1', 'Gudang Finished Goods', 'B', 3500),
    ('WH-C1', 'Gudang WIP', 'C', 2000)
on conflict (code) where deleted_at is null do nothing;

-- =============================================================================================
-- C. users (blueprint 1.8 C) plus a director; roles come from the RBAC seed migration.
-- No password: admins set one through the CLI/API. `on conflict do nothing` without a target
-- so an existing user with the same username, e-mail or phone (any live unique index) wins.
-- =============================================================================================
insert into adm_user (username, email, full_name, phone, role_id, emp_id, lang, is_active, last_login)
select v.username, v.email, v.full_name, v.phone,
       (select r.id from adm_role r where r.code = v.role_code and r.deleted_at is null),
       (select e.id from m_emp e where e.code = v.emp_code and e.deleted_at is null),
       v.lang, v.is_active, v.last_login
from (values
    ('dirut', 'dirut@factory.local', 'Bapak Hendra Wijaya', '+628110000001', 'DIRECTOR', null, 'id', true, null::timestamptz),
    ('john.doe', 'john@factory.local', 'John Doe', '+628110000002', 'MANAGER_SALES', null, 'id', true, timestamptz '2024-12-27 09:15+07'),
    ('jane.smith', 'jane@factory.local', 'Jane Smith', '+628110000003', 'MANAGER_PROD', null, 'en', true, timestamptz '2024-12-26 16:45+07'),
    ('operator1', 'op1@factory.local', 'Agus Setiawan', '+628110000004', 'OPERATOR', 'EMP-003', 'id', true, timestamptz '2024-12-27 07:00+07'),
    ('admin', 'admin@factory.local', 'Administrator Sistem', '+628110000005', 'SYSADMIN', null, 'id', true, timestamptz '2024-12-27 10:30+07'),
    ('resigned', 'ex@factory.local', 'Dimas Prakoso', '+628110000006', 'STAFF_SALES', null, 'id', false, timestamptz '2024-10-15 08:00+07')
) as v (username, email, full_name, phone, role_code, emp_code, lang, is_active, last_login)
order by v.phone
on conflict do nothing;

-- =============================================================================================
-- B. blueprint sample transactions (1.8 B), verbatim. Dated Dec 2024, outside the generated
-- window; numbers 0001..0004 never clash with generated ones (>= 0111).
-- Note: the blueprint's header totals of SO-202412-0002 (125,000,000) and SO-202412-0004
-- (450,000,000) do not equal their line subtotals; they are kept as published.
-- SO-202412-0003 has no lines in the blueprint; one line (150 x Assembly Kit B = its total)
-- is added. The PO lines are likewise invented to match the published PO totals.
-- =============================================================================================
insert into t_so (doc_no, cust_id, order_dt, deadline_dt, total_amt, disc_pct, status,
                  approved_by, approved_at, created_by, created_at, updated_at)
select v.doc_no,
       (select c.id from m_cust c where c.code = v.cust and c.deleted_at is null),
       v.order_dt, v.order_dt + 14, v.total_amt, 0, v.status,
       case when v.approved_at is not null
            then (select u.id from adm_user u where u.username = 'john.doe' and u.deleted_at is null) end,
       v.approved_at,
       (select u.id from adm_user u where u.username = 'john.doe' and u.deleted_at is null),
       v.created_at, coalesce(v.approved_at, v.created_at)
from (values
    ('SO-202412-0001', 'CUST-001', date '2024-12-20', 32500000, 'Approved', timestamptz '2024-12-20 09:10+07', timestamptz '2024-12-20 13:40+07'),
    ('SO-202412-0002', 'CUST-003', date '2024-12-22', 125000000, 'Pending', timestamptz '2024-12-22 10:05+07', null),
    ('SO-202412-0003', 'CUST-002', date '2024-12-25', 18750000, 'Draft', timestamptz '2024-12-25 11:20+07', null),
    ('SO-202412-0004', 'CUST-005', date '2024-12-27', 450000000, 'Approved', timestamptz '2024-12-27 14:30+07', timestamptz '2024-12-27 15:10+07')
) as v (doc_no, cust, order_dt, total_amt, status, created_at, approved_at)
on conflict (doc_no) do nothing;

insert into t_so_detail (so_id, item_id, qty, unit_price, disc_pct)
select s.id, i.id, v.qty, v.unit_price, v.disc_pct
from (values
    ('SO-202412-0001', 'ITM-001', 500, 65000, 0),
    ('SO-202412-0002', 'ITM-001', 1000, 65000, 5),
    ('SO-202412-0002', 'ITM-003', 500, 125000, 0),
    ('SO-202412-0003', 'ITM-003', 150, 125000, 0),
    ('SO-202412-0004', 'ITM-005', 2000, 220000, 2)
) as v (doc_no, item, qty, unit_price, disc_pct)
join t_so s on s.doc_no = v.doc_no
join m_item i on i.code = v.item and i.deleted_at is null
on conflict (so_id, item_id) do nothing;

-- PO-202412-0001 was approved by jane.smith (blueprint audit log: "APPROVE t_po #1")
insert into t_po (doc_no, vendor_id, order_dt, total_amt, status, approved_by, approved_at, created_at, updated_at)
select v.doc_no,
       (select m.id from m_vendor m where m.code = v.vendor and m.deleted_at is null),
       v.order_dt, v.total_amt, v.status,
       case when v.approved_at is not null
            then (select u.id from adm_user u where u.username = 'jane.smith' and u.deleted_at is null) end,
       v.approved_at, v.created_at, coalesce(v.approved_at, v.created_at)
from (values
    ('PO-202412-0001', 'VND-001', date '2024-12-18', 75000000, 'Approved', timestamptz '2024-12-18 10:00+07', timestamptz '2024-12-27 14:28+07'),
    ('PO-202412-0002', 'VND-002', date '2024-12-20', 45000000, 'Pending Director', timestamptz '2024-12-20 11:00+07', null),
    ('PO-202412-0003', 'VND-003', date '2024-12-25', 12500000, 'Draft', timestamptz '2024-12-25 09:30+07', null)
) as v (doc_no, vendor, order_dt, total_amt, status, created_at, approved_at)
on conflict (doc_no) do nothing;

insert into t_po_detail (po_id, item_id, qty, unit_price)
select p.id, i.id, v.qty, v.unit_price
from (values
    ('PO-202412-0001', 'ITM-004', 1000, 75000),
    ('PO-202412-0002', 'ITM-002', 3600, 12500),
    ('PO-202412-0003', 'ITM-002', 1000, 12500)
) as v (doc_no, item, qty, unit_price)
join t_po p on p.doc_no = v.doc_no
join m_item i on i.code = v.item and i.deleted_at is null
on conflict (po_id, item_id) do nothing;

insert into t_do (doc_no, so_id, driver_id, driver_name, ship_dt, eta_dt, actual_dt, status, created_at, updated_at)
select v.doc_no,
       (select s.id from t_so s where s.doc_no = v.so_no),
       (select e.id from m_emp e where e.code = v.emp and e.deleted_at is null),
       v.driver_name, v.ship_dt, v.eta_dt, v.actual_dt, v.status,
       pg_temp.demo_ts(v.ship_dt - 1, interval '15:00'),
       pg_temp.demo_ts(coalesce(v.actual_dt, v.ship_dt), interval '14:00')
from (values
    ('DO-202412-0001', 'SO-202412-0001', 'EMP-001', 'Pak Budi', date '2024-12-22', date '2024-12-23', date '2024-12-23', 'Delivered'),
    ('DO-202412-0002', 'SO-202412-0004', 'EMP-002', 'Pak Joko', date '2024-12-28', date '2024-12-30', null, 'In Transit')
) as v (doc_no, so_no, emp, driver_name, ship_dt, eta_dt, actual_dt, status)
on conflict (doc_no) do nothing;

-- the blueprint gives no WO dates: one week each around the sample period
insert into t_wo (doc_no, item_id, machine_id, start_dt, end_dt, plan_qty, actual_qty, reject_qty, status, created_at, updated_at)
select v.doc_no,
       (select i.id from m_item i where i.code = v.item and i.deleted_at is null),
       (select m.id from m_machine m where m.code = v.mch and m.deleted_at is null),
       v.start_dt, v.end_dt, v.plan_qty, v.actual_qty, 0, v.status,
       pg_temp.demo_ts(v.start_dt - 3, interval '10:00'),
       pg_temp.demo_ts(least(v.end_dt, date '2024-12-27'), interval '16:00')
from (values
    ('WO-202412-0001', 'ITM-001', 'MCH-001', date '2024-12-16', date '2024-12-20', 1000, 980, 'Completed'),
    ('WO-202412-0002', 'ITM-003', 'MCH-002', date '2024-12-23', date '2024-12-28', 500, 320, 'In Progress'),
    ('WO-202412-0003', 'ITM-005', 'MCH-003', date '2024-12-30', date '2025-01-03', 2000, 0, 'Scheduled')
) as v (doc_no, item, mch, start_dt, end_dt, plan_qty, actual_qty, status)
on conflict (doc_no) do nothing;

-- current stock per the blueprint; Motor DC 12V is oversold (reserved 2000 > on hand 1800,
-- the 2000 reserved by SO-202412-0004)
insert into t_inv (item_id, wh_id, qty_on_hand, qty_reserved)
select i.id, w.id, v.on_hand, v.reserved
from (values
    ('ITM-001', 'WH-B1', 2500, 500),
    ('ITM-002', 'WH-A1', 850, 0),
    ('ITM-003', 'WH-C1', 320, 100),
    ('ITM-004', 'WH-A1', 150, 50),
    ('ITM-005', 'WH-B1', 1800, 2000)
) as v (item, wh, on_hand, reserved)
join m_item i on i.code = v.item and i.deleted_at is null
join m_wh w on w.code = v.wh and w.deleted_at is null
on conflict (item_id, wh_id) do nothing;

-- stock moves of the sample documents
insert into t_inv_move (item_id, wh_from, wh_to, qty, move_type, ref_doc, move_at, created_at, updated_at)
select i.id,
       (select w.id from m_wh w where w.code = v.wh_from and w.deleted_at is null),
       (select w.id from m_wh w where w.code = v.wh_to and w.deleted_at is null),
       v.qty, v.move_type, v.ref_doc, v.move_at, v.move_at, v.move_at
from (values
    ('ITM-001', 'WH-B1', null, 500, 'OUT', 'DO-202412-0001', timestamptz '2024-12-22 08:00+07'),
    ('ITM-001', null, 'WH-B1', 980, 'IN', 'WO-202412-0001', timestamptz '2024-12-20 16:00+07')
) as v (item, wh_from, wh_to, qty, move_type, ref_doc, move_at)
join m_item i on i.code = v.item and i.deleted_at is null
on conflict (ref_doc, item_id, move_type) do nothing;

-- =============================================================================================
-- D. AI alerts (blueprint 1.8 D). Marked as already sent so the dispatcher does not push
-- them over WhatsApp; the OVERDUE one is read and acknowledged (not "active").
-- =============================================================================================
insert into ai_alert (module, alert_type, severity, message, channel, is_sent, sent_at, is_read,
                      acked_at, acked_by, payload, dedup_key, created_at, updated_at)
select v.module, v.alert_type, v.severity, v.message, 'WA', true, now() - v.age + interval '1 minute',
       v.is_read,
       case when v.is_read then now() - v.age + interval '2 hours' end,
       case when v.is_read then (select u.id from adm_user u where u.username = 'john.doe' and u.deleted_at is null) end,
       v.payload::jsonb, v.dedup_key, now() - v.age, now() - v.age
from (values
    ('demo-1', 'WO', 'ANOMALY', 'High', 'Reject rate MCH-003 = 8.5% (threshold: 5%)', false, interval '40 minutes',
     '{"machine": "MCH-003", "reject_rate_pct": 8.5, "threshold_pct": 5, "window_days": 7}'),
    ('demo-2', 'FIN', 'CASHFLOW', 'Critical', 'Saldo kas negatif dalam 7 hari', false, interval '3 hours',
     '{"horizon_days": 7}'),
    ('demo-3', 'FIN', 'OVERDUE', 'Medium', '3 customer piutang > 30 hari', true, interval '1 day 4 hours',
     '{"customers": ["CUST-002", "CUST-003", "CUST-004"], "min_days_overdue": 30}'),
    ('demo-4', 'INV', 'STOCK', 'Medium', 'ITM-005 oversold (-200)', false, interval '5 hours',
     '{"item": "ITM-005", "wh": "WH-B1", "available": -200}')
) as v (dedup_key, module, alert_type, severity, message, is_read, age, payload)
on conflict (dedup_key) do nothing;

-- =============================================================================================
-- E. generated sales: 2-5 orders per weekday, 1-2 on Saturday, none on Sunday (except a
-- Sunday that is the 1st, so every month has revenue). Slot 1 of a day is never Draft or
-- Cancel. Doc numbers SO-YYYYMM-NNNN with NNNN = 100 + day*10 + slot (0111..0415); the
-- delivery of an order has the same number with prefix DO.
-- Lifecycle per order (all from hashes): approval 0-3 days after the order, shipping 1-3 days
-- after approval, transit 1-2 days (+1 to Surabaya), 12% arrive 1-3 days late, closed 3 days
-- after delivery. Status = the stage reached by today.
-- =============================================================================================
create temp table demo_so as
with slot as (
    select d.d as order_dt, d.ym, d.dom, d.age, k, 'so' || d.ymd || '-' || k as seed
    from demo_day d
    cross join lateral generate_series(1,
        case
            when d.dow = 7 then case when d.dom = 1 then 1 else 0 end
            when d.dow = 6 then 1 + pg_temp.demo_h('so-n' || d.ymd) % 2
            else 2 + pg_temp.demo_h('so-n' || d.ymd) % 4
        end) as k
),
-- customer mix (share of orders) and order size factor: VIP orders are larger; UD Sentosa
-- (credit limit 50 jt) orders little
base as (
    select s.*, c.cust, c.vip, c.scale,
           0.85 + 0.30 * pg_temp.demo_u('mf' || s.ym) as mf,
           case pg_temp.demo_h(s.seed || 'lag') % 20 / 7 when 0 then 0 when 1 then 1 else 2 end
               + case when pg_temp.demo_h(s.seed || 'lag') % 20 = 19 then 1 else 0 end as lag,
           1 + pg_temp.demo_h(s.seed || 'ship') % 3 as ship_gap,
           1 + pg_temp.demo_h(s.seed || 'eta') % 2 + case when c.cust = 'CUST-003' then 1 else 0 end as transit,
           case when pg_temp.demo_u(s.seed || 'late') < 0.12
                then 1 + pg_temp.demo_h(s.seed || 'late') % 3 else 0 end as late,
           s.k >= 2 and ((s.age <= 2 and pg_temp.demo_h(s.seed || 'draft') % 5 = 0)
                         or pg_temp.demo_h(s.seed || 'draft') % 97 = 1) as is_draft,
           s.k >= 2 and s.age >= 2 and pg_temp.demo_h(s.seed || 'cancel') % 30 = 0 as is_cancel,
           pg_temp.demo_u(s.seed || 'drv') as drv_u
    from slot s
    join (values
        ('CUST-001', 0.00, 0.25, true, 1.00),
        ('CUST-002', 0.25, 0.45, false, 0.25),
        ('CUST-003', 0.45, 0.70, true, 1.20),
        ('CUST-004', 0.70, 0.80, false, 0.15),
        ('CUST-005', 0.80, 1.01, true, 1.50)
    ) as c (cust, lo, hi, vip, scale)
      on pg_temp.demo_u(s.seed || 'cust') >= c.lo and pg_temp.demo_u(s.seed || 'cust') < c.hi
),
dates as (
    select b.*,
           'SO-' || b.ym || '-' || to_char(100 + b.dom * 10 + b.k, 'FM0000') as doc_no,
           'DO-' || b.ym || '-' || to_char(100 + b.dom * 10 + b.k, 'FM0000') as do_no,
           case when pg_temp.demo_h(b.seed || 'hdisc') % 15 = 0 then 1.00 else 0.00 end as hdr_disc,
           b.order_dt + 7 + pg_temp.demo_h(b.seed || 'dl') % 8 as deadline_dt,
           b.order_dt + b.lag as approve_dt,
           b.order_dt + b.lag + b.ship_gap as ship_dt,
           b.order_dt + b.lag + b.ship_gap + b.transit as eta_dt,
           b.order_dt + b.lag + b.ship_gap + b.transit + b.late as actual_dt,
           b.order_dt + b.lag + b.ship_gap + b.transit + b.late + 3 as close_dt,
           -- receivable: 30 days (VIP 45); most pay between 9 days early and 5 days late
           b.order_dt + case when b.vip then 45 else 30 end as due_dt,
           b.order_dt + case when b.vip then 45 else 30 end + pg_temp.demo_h(b.seed || 'pay') % 15 - 9 as pay_dt,
           pg_temp.demo_ts(b.order_dt, interval '08:00' + b.k * interval '25 minutes') as created_ts,
           pg_temp.demo_ts(b.order_dt + b.lag,
                           interval '10:30' + (pg_temp.demo_h(b.seed || 'apt') % 6) * interval '1 hour') as approved_ts
    from base b
)
select d.*,
       case
           when d.is_draft then 'Draft'
           when d.is_cancel then 'Cancel'
           when c.today < d.approve_dt then 'Pending'
           when c.today < d.ship_dt then 'Approved'
           when c.today < d.close_dt then 'Open'
           else 'Closed'
       end as status,
       case
           when c.today < d.ship_dt then 'Pending'
           when c.today = d.ship_dt then 'Shipped'
           when c.today < d.actual_dt then 'In Transit'
           else 'Delivered'
       end as do_status,
       case when d.drv_u < 0.45 then 'EMP-001' when d.drv_u < 0.90 then 'EMP-002' end as drv_emp,
       case when d.drv_u < 0.45 then 'Pak Budi' when d.drv_u < 0.90 then 'Pak Joko'
            else 'Pak Slamet (ekspedisi)' end as drv_name
from dates d
cross join demo_ctx c;

-- order lines: a hash-chosen non-empty subset of the three sellable items; VIP lines get
-- 0/2/5 % discount as in the samples
create temp table demo_so_line as
select s.doc_no, i.id as item_id, q.qty, i.sell_price as unit_price, q.disc_pct,
       round(q.qty * i.sell_price * (1 - q.disc_pct / 100), 2) as line_amt
from demo_so s
join (values ('ITM-001', 1, 25, 12), ('ITM-003', 2, 10, 10), ('ITM-005', 4, 5, 10)) as v (item, bit, step, span)
  on ((1 + pg_temp.demo_h(s.seed || 'mix') % 7) & v.bit) <> 0
join m_item i on i.code = v.item and i.deleted_at is null
cross join lateral (
    select greatest(5, round((1 + pg_temp.demo_h(s.seed || v.item) % v.span) * v.step * s.scale * s.mf / 5) * 5) as qty,
           case when s.vip then
               case pg_temp.demo_h(s.seed || v.item || 'd') % 4 when 0 then 2.00 when 1 then 5.00 else 0.00 end
           else 0.00 end as disc_pct
) as q;

-- headers (total = lines less header discount) and, for newly inserted headers only, lines
with ins as (
    insert into t_so (doc_no, cust_id, order_dt, deadline_dt, total_amt, disc_pct, status,
                      approved_by, approved_at, created_by, created_at, updated_at)
    select p.doc_no,
           (select c.id from m_cust c where c.code = p.cust and c.deleted_at is null),
           p.order_dt, p.deadline_dt,
           (select round(sum(l.line_amt) * (1 - p.hdr_disc / 100), 2) from demo_so_line l where l.doc_no = p.doc_no),
           p.hdr_disc, p.status,
           case when p.status in ('Approved', 'Open', 'Closed')
                then (select u.id from adm_user u where u.username = 'john.doe' and u.deleted_at is null) end,
           case when p.status in ('Approved', 'Open', 'Closed') then p.approved_ts end,
           (select u.id from adm_user u where u.username = 'john.doe' and u.deleted_at is null),
           p.created_ts,
           case p.status
               when 'Closed' then pg_temp.demo_ts(p.close_dt, interval '16:00')
               when 'Open' then pg_temp.demo_ts(p.ship_dt, interval '08:00')
               when 'Approved' then p.approved_ts
               when 'Cancel' then pg_temp.demo_ts(p.order_dt + 1, interval '11:00')
               else p.created_ts
           end
    from demo_so p
    order by p.order_dt, p.k
    on conflict (doc_no) do nothing
    returning id, doc_no, created_at
)
insert into t_so_detail (so_id, item_id, qty, unit_price, disc_pct, created_at, updated_at)
select ins.id, l.item_id, l.qty, l.unit_price, l.disc_pct, ins.created_at, ins.created_at
from ins
join demo_so_line l on l.doc_no = ins.doc_no
order by ins.id, l.item_id
on conflict (so_id, item_id) do nothing;

-- deliveries for every approved/open/closed order (as stored: an order first loaded as
-- Pending stays without delivery)
insert into t_do (doc_no, so_id, driver_id, driver_name, ship_dt, eta_dt, actual_dt, status,
                  created_at, updated_at)
select p.do_no, s.id,
       (select e.id from m_emp e where e.code = p.drv_emp and e.deleted_at is null),
       p.drv_name, p.ship_dt, p.eta_dt,
       case when p.do_status = 'Delivered' then p.actual_dt end,
       p.do_status,
       p.approved_ts + interval '30 minutes',
       case p.do_status
           when 'Delivered' then pg_temp.demo_ts(p.actual_dt, interval '14:00')
           when 'In Transit' then pg_temp.demo_ts(p.ship_dt + 1, interval '06:00')
           when 'Shipped' then pg_temp.demo_ts(p.ship_dt, interval '08:00')
           else p.approved_ts + interval '30 minutes'
       end
from demo_so p
join t_so s on s.doc_no = p.doc_no and s.deleted_at is null
where s.status in ('Approved', 'Open', 'Closed')
order by p.order_dt, p.k
on conflict (doc_no) do nothing;

-- receivables for delivered orders. Paid on the planned pay date when that has passed;
-- unpaid past due = Overdue. Three customers have chronically late invoices (> 30 days past
-- due, matching the alert "3 customer piutang > 30 hari"): UD Sentosa (3 invoices),
-- CV XYZ Trading (2), PT Maju Jaya (1), picked by rank among invoices 31-100 days past due.
insert into t_ar (so_id, cust_id, amt, due_dt, paid_dt, status, created_at, updated_at)
select q.so_id, q.cust_id, q.total_amt, q.due_dt,
       case when q.status = 'Paid' then q.pay_dt end,
       q.status,
       pg_temp.demo_ts(q.actual_dt, interval '16:00'),
       case when q.status = 'Paid' then pg_temp.demo_ts(q.pay_dt, interval '11:00')
            else pg_temp.demo_ts(q.actual_dt, interval '16:00') end
from (
    select r.*,
           case
               when r.in_window and ((r.cust = 'CUST-004' and r.rn in (1, 3, 6))
                                     or (r.cust = 'CUST-002' and r.rn in (1, 4))
                                     or (r.cust = 'CUST-003' and r.rn = 2)) then 'Overdue'
               when r.pay_dt <= r.today then 'Paid'
               when r.due_dt < r.today then 'Overdue'
               else 'Open'
           end as status
    from (
        select s.id as so_id, s.cust_id, s.total_amt, p.cust, p.due_dt, p.pay_dt, p.actual_dt, c.today,
               p.due_dt between c.today - 100 and c.today - 31 as in_window,
               row_number() over (partition by p.cust, p.due_dt between c.today - 100 and c.today - 31
                                  order by p.due_dt desc, p.doc_no desc) as rn
        from demo_so p
        join t_so s on s.doc_no = p.doc_no and s.deleted_at is null
        join t_do d on d.doc_no = p.do_no and d.deleted_at is null
        cross join demo_ctx c
        where d.status = 'Delivered' and s.status in ('Open', 'Closed')
    ) as r
) as q
order by q.so_id
on conflict (so_id) where so_id is not null do nothing;

-- =============================================================================================
-- F. generated purchasing: a PO every Monday, Wednesday and Friday (~1 per 2 working days),
-- vendor by hash, raw materials/components matching the vendor. PO-YYYYMM-NNNN with
-- NNNN = 100 + day*10 + 1. Lead time by vendor (PT Global Supply is the slow one); steel plate
-- price rises ~10% over the window. Payables: due 45 days after the PO date (the regular PO
-- days keep some payables due in every week).
-- =============================================================================================
create temp table demo_po as
with base as (
    select d.d as order_dt, d.ym, d.dom, d.age, 'po' || d.ymd as seed
    from demo_day d
    where d.dow in (1, 3, 5)
),
v as (
    select b.*, x.vendor, x.item1, x.item2, x.lead_min, x.lead_span
    from base b
    join (values
        ('VND-001', 0.00, 0.40, 'ITM-004', 'ITM-002', 5, 5),
        ('VND-002', 0.40, 0.75, 'ITM-002', 'ITM-005', 6, 7),
        ('VND-003', 0.75, 1.01, 'ITM-005', 'ITM-002', 10, 11)
    ) as x (vendor, lo, hi, item1, item2, lead_min, lead_span)
      on pg_temp.demo_u(b.seed || 'v') >= x.lo and pg_temp.demo_u(b.seed || 'v') < x.hi
),
dates as (
    select v.*,
           'PO-' || v.ym || '-' || to_char(100 + v.dom * 10 + 1, 'FM0000') as doc_no,
           v.order_dt + 1 + pg_temp.demo_h(v.seed || 'lag') % 2 as approve_dt,
           v.order_dt + v.lead_min + pg_temp.demo_h(v.seed || 'lead') % v.lead_span as recv_dt,
           v.order_dt + 45 as due_dt,
           v.order_dt + 45 + pg_temp.demo_h(v.seed || 'pay') % 6 - 2 as pay_dt,
           v.age = 0 and pg_temp.demo_h(v.seed || 'draft') % 3 = 0 as is_draft,
           v.age >= 3 and pg_temp.demo_h(v.seed || 'cancel') % 30 = 0 as is_cancel
    from v
)
select d.*,
       case
           when d.is_draft then 'Draft'
           when d.is_cancel then 'Cancel'
           when c.today < d.approve_dt then 'Pending Director'
           when c.today < d.recv_dt then 'Approved'
           else 'Received'
       end as status,
       pg_temp.demo_ts(d.order_dt, interval '09:30') as created_ts,
       pg_temp.demo_ts(d.approve_dt, interval '09:00' + (pg_temp.demo_h(d.seed || 'apt') % 8) * interval '1 hour') as approved_ts
from dates d
cross join demo_ctx c;

create temp table demo_po_line as
select p.doc_no, i.id as item_id,
       case li.item
           when 'ITM-002' then (5 + pg_temp.demo_h(p.seed || li.item) % 36) * 100
           when 'ITM-004' then (10 + pg_temp.demo_h(p.seed || li.item) % 71) * 10
           else (2 + pg_temp.demo_h(p.seed || li.item) % 11) * 50
       end as qty,
       case li.item
           when 'ITM-004' then round(i.std_cost * (0.95 + 0.10 * (p.order_dt - c.start_dt) / 400.0
                                                   + 0.02 * pg_temp.demo_u(p.seed || li.item || 'p')) / 100) * 100
           else round(i.std_cost * (0.98 + 0.04 * pg_temp.demo_u(p.seed || li.item || 'p')) / 100) * 100
       end as unit_price
from demo_po p
cross join demo_ctx c
cross join lateral (values (p.item1, true), (p.item2, pg_temp.demo_h(p.seed || '2nd') % 3 = 0)) as li (item, incl)
join m_item i on i.code = li.item and i.deleted_at is null
where li.incl;

with ins as (
    insert into t_po (doc_no, vendor_id, order_dt, total_amt, status, approved_by, approved_at,
                      created_by, created_at, updated_at)
    select p.doc_no,
           (select m.id from m_vendor m where m.code = p.vendor and m.deleted_at is null),
           p.order_dt,
           (select round(sum(l.qty * l.unit_price), 2) from demo_po_line l where l.doc_no = p.doc_no),
           p.status,
           case when p.status in ('Approved', 'Received')
                then (select u.id from adm_user u where u.username = 'dirut' and u.deleted_at is null) end,
           case when p.status in ('Approved', 'Received') then p.approved_ts end,
           (select u.id from adm_user u where u.username = 'admin' and u.deleted_at is null),
           p.created_ts,
           case p.status
               when 'Received' then pg_temp.demo_ts(p.recv_dt, interval '13:00')
               when 'Approved' then p.approved_ts
               when 'Cancel' then pg_temp.demo_ts(p.order_dt + 2, interval '10:00')
               else p.created_ts
           end
    from demo_po p
    order by p.order_dt
    on conflict (doc_no) do nothing
    returning id, doc_no, created_at
)
insert into t_po_detail (po_id, item_id, qty, unit_price, created_at, updated_at)
select ins.id, l.item_id, l.qty, l.unit_price, ins.created_at, ins.created_at
from ins
join demo_po_line l on l.doc_no = ins.doc_no
order by ins.id, l.item_id
on conflict (po_id, item_id) do nothing;

-- payables for received POs: most paid 2 days early to 3 days late, some Open (several due
-- within a week), a few Overdue (naturally late plus the 2nd and 4th most recent of the last 25 days)
insert into t_ap (po_id, vendor_id, amt, due_dt, paid_dt, status, created_at, updated_at)
select q.po_id, q.vendor_id, q.total_amt, q.due_dt,
       case when q.status = 'Paid' then q.pay_dt end,
       q.status,
       pg_temp.demo_ts(q.recv_dt, interval '13:00'),
       case when q.status = 'Paid' then pg_temp.demo_ts(q.pay_dt, interval '10:00')
            else pg_temp.demo_ts(q.recv_dt, interval '13:00') end
from (
    select r.*,
           case
               when r.in_window and r.rn in (2, 4) then 'Overdue'
               when r.pay_dt <= r.today then 'Paid'
               when r.due_dt < r.today then 'Overdue'
               else 'Open'
           end as status
    from (
        select t.id as po_id, t.vendor_id, t.total_amt, p.due_dt, p.pay_dt, p.recv_dt, c.today,
               p.due_dt between c.today - 25 and c.today - 1 as in_window,
               row_number() over (partition by p.due_dt between c.today - 25 and c.today - 1
                                  order by p.due_dt desc, p.doc_no desc) as rn
        from demo_po p
        join t_po t on t.doc_no = p.doc_no and t.deleted_at is null
        cross join demo_ctx c
        where t.status = 'Received'
    ) as r
) as q
order by q.po_id
on conflict (po_id) where po_id is not null do nothing;

-- =============================================================================================
-- G. production. Machine parameters: product, preventive-maintenance day of month, error
-- codes (minor stops and breakdowns), QC sample size.
-- =============================================================================================
create temp table demo_mch as
select *
from (values
    ('MCH-001', 1, 120::numeric, 'ITM-001', 5, 'E-201 Tool Wear', 'E-202 Chip Jam',
     'E-203 Spindle Vibr', 'Ganti bearing spindle, vibrasi tinggi',
     'E-204 Servo Alarm', 'Reset servo drive sumbu X, ganti kabel encoder',
     125, 2500000, 'PM bulanan: pelumasan, cek spindle, kalibrasi sumbu'),
    ('MCH-002', 2, 200::numeric, 'ITM-003', 12, 'E-301 Mold Temp', 'E-302 Short Shot',
     'E-303 Hydraulic Leak', 'Perbaikan kebocoran hidrolik, ganti seal silinder',
     'E-304 Heater Band', 'Ganti heater band barrel zona 2',
     200, 3500000, 'PM bulanan: cek oli hidrolik, bersihkan mold, cek heater'),
    ('MCH-003', 3, 80::numeric, 'ITM-005', 19, 'E-102 Wire Feed', 'E-103 Gas Pressure',
     'E-104 Torch Crash', 'Kalibrasi ulang TCP setelah torch crash, ganti neck torch',
     'E-101 Overheat', 'Overheat: bersihkan saluran pendingin torch, ganti liner',
     80, 2000000, 'PM bulanan: ganti tip & nozzle, cek kabel, kalibrasi robot')
) as m (code, no, cap, item, pm_day, minor1, minor2, major1, note1, major2, note2, qc_sample, pm_cost, pm_note);

-- maintenance: preventive once a month per machine; corrective ~8x a year per machine at
-- random, plus the recurring overheat of MCH-003 four days ago (still unresolved)
create temp table demo_maint as
select distinct on (x.mch, x.maint_dt, x.maint_type) x.*
from (
    select m.code as mch, d.d as maint_dt, 'Preventive' as maint_type,
           m.pm_cost + (pg_temp.demo_h('pm' || m.code || d.ymd) % 11) * 100000 as cost,
           m.pm_note as notes, null::text as error_code, '1' as shift, 1 as prio
    from demo_mch m
    join demo_day d on d.dom = m.pm_day
    union all
    select m.code, d.d, 'Corrective',
           2500000 + (pg_temp.demo_h('cmc' || m.code || d.ymd) % 36) * 500000,
           case when pg_temp.demo_h('cmk' || m.code || d.ymd) % 2 = 0 then m.note1 else m.note2 end,
           case when pg_temp.demo_h('cmk' || m.code || d.ymd) % 2 = 0 then m.major1 else m.major2 end,
           (1 + pg_temp.demo_h('cms' || m.code || d.ymd) % 3)::text,
           2
    from demo_mch m
    join demo_day d on pg_temp.demo_h('cm' || m.code || d.ymd) % 50 = 0 and d.dom <> m.pm_day
    union all
    select 'MCH-003', c.today - 4, 'Corrective', 7500000,
           'Overheat E-101 berulang: saluran pendingin torch dibersihkan, reject masih tinggi, menunggu sparepart water cooler',
           'E-101 Overheat', '1', 0
    from demo_ctx c
) as x
order by x.mch, x.maint_dt, x.maint_type, x.prio;

insert into t_maint (machine_id, maint_dt, maint_type, cost, notes, created_at, updated_at)
select m.id, x.maint_dt, x.maint_type, x.cost,
       case when x.error_code is not null then x.error_code || ' - ' || x.notes else x.notes end,
       pg_temp.demo_ts(x.maint_dt, interval '16:00'), pg_temp.demo_ts(x.maint_dt, interval '16:00')
from demo_maint x
join m_machine m on m.code = x.mch and m.deleted_at is null
order by x.maint_dt, m.id
on conflict (machine_id, maint_dt, maint_type) do nothing;

-- shift logs: every machine, every day, shifts 1-3 (07-15, 15-23, 23-07). Output around
-- cap_per_hr*8 (output_qty includes rejects). Downtime from maintenance, breakdowns and ~7%
-- minor stops. Reject 0.8-3.0%, except MCH-003: 3-4.5% 8-14 days ago and 7.5-9.5% (~8.5%)
-- with frequent E-101 overheat stops in the last 7 days.
create temp table demo_shift as
select m.code as mch, m.no, d.d as log_dt, s.shift,
       'EMP-' || to_char(3 + (s.shift::int - 1) * 3 + (m.no - 1), 'FM000') as emp,
       dt.downtime_min, dt.error_code, o.output_qty,
       round(o.output_qty * r.rate) as reject_qty
from demo_mch m
cross join demo_day d
cross join (values ('1'), ('2'), ('3')) as s (shift)
cross join demo_ctx c
left join demo_maint pm on pm.mch = m.code and pm.maint_dt = d.d and pm.maint_type = 'Preventive'
left join demo_maint cm on cm.mch = m.code and cm.maint_dt = d.d and cm.maint_type = 'Corrective'
cross join lateral (
    select pg_temp.demo_u('dt' || m.code || d.ymd || s.shift) as u,
           pg_temp.demo_h('dm' || m.code || d.ymd || s.shift) as h
) as hs
cross join lateral (
    select
        case
            when cm.shift = s.shift then 90 + (hs.h % 7) * 30
            when pm.shift = s.shift then 120
            when m.code = 'MCH-003' and d.age < 7 and hs.u < 0.35 then 20 + (hs.h % 6) * 15
            when hs.u < 0.07 then 15 + (hs.h % 7) * 15
            else 0
        end as downtime_min,
        case
            when cm.shift = s.shift then cm.error_code
            when pm.shift = s.shift then 'PM Terjadwal'
            when m.code = 'MCH-003' and d.age < 7 and hs.u < 0.35 then 'E-101 Overheat'
            when hs.u < 0.07 then case when hs.h % 2 = 0 then m.minor1 else m.minor2 end
        end as error_code
) as dt
cross join lateral (
    select round(m.cap * 8 * (1 - dt.downtime_min / 480.0)
                 * (0.86 + 0.12 * pg_temp.demo_u('out' || m.code || d.ymd || s.shift))) as output_qty
) as o
cross join lateral (
    select case
               when m.code = 'MCH-003' and d.age < 7
                   then 0.075 + 0.020 * pg_temp.demo_u('rj' || m.code || d.ymd || s.shift)
               when m.code = 'MCH-003' and d.age < 14
                   then 0.030 + 0.015 * pg_temp.demo_u('rj' || m.code || d.ymd || s.shift)
               else 0.008 + 0.022 * pg_temp.demo_u('rj' || m.code || d.ymd || s.shift)
           end as rate
) as r;

insert into t_shift_log (machine_id, emp_id, log_dt, shift, output_qty, reject_qty, downtime_min, error_code,
                         created_at, updated_at)
select m.id,
       (select e.id from m_emp e where e.code = x.emp and e.deleted_at is null),
       x.log_dt, x.shift, x.output_qty, x.reject_qty, x.downtime_min, x.error_code,
       pg_temp.demo_ts(x.log_dt, interval '15:00' + (x.shift::int - 1) * interval '8 hours'),
       pg_temp.demo_ts(x.log_dt, interval '15:00' + (x.shift::int - 1) * interval '8 hours')
from demo_shift x
join m_machine m on m.code = x.mch and m.deleted_at is null
order by x.log_dt, m.id, x.shift
on conflict (machine_id, log_dt, shift) do nothing;

-- work orders: one per machine per week (Monday-Sunday, 21 shifts), plan = 92% of capacity;
-- actual/reject = the week's shift logs so far. Completed when the week is over, In Progress
-- this week, Scheduled next week. WO-YYYYMM-NNNN with NNNN = 100 + Monday's day*10 + machine.
create temp table demo_wo as
select m.code as mch, m.no, m.item, w.start_dt, w.start_dt + 6 as end_dt,
       'WO-' || to_char(w.start_dt, 'YYYYMM') || '-'
           || to_char(100 + extract(day from w.start_dt)::int * 10 + m.no, 'FM0000') as doc_no,
       round(m.cap * 8 * 21 * 0.92 / 100) * 100 as plan_qty,
       case
           when w.start_dt > c.today then 'Scheduled'
           when w.start_dt + 6 >= c.today then 'In Progress'
           else 'Completed'
       end as status,
       coalesce(a.output_qty, 0) as actual_qty,
       coalesce(a.reject_qty, 0) as reject_qty
from demo_mch m
cross join demo_ctx c
cross join lateral (
    select c.first_mon + 7 * i as start_dt
    from generate_series(0, (c.next_mon - c.first_mon) / 7) as i
) as w
left join lateral (
    select sum(x.output_qty) as output_qty, sum(x.reject_qty) as reject_qty
    from demo_shift x
    where x.mch = m.code and x.log_dt between w.start_dt and w.start_dt + 6
) as a on true;

insert into t_wo (doc_no, item_id, machine_id, start_dt, end_dt, plan_qty, actual_qty, reject_qty, status,
                  created_by, created_at, updated_at)
select p.doc_no,
       (select i.id from m_item i where i.code = p.item and i.deleted_at is null),
       (select m.id from m_machine m where m.code = p.mch and m.deleted_at is null),
       p.start_dt, p.end_dt, p.plan_qty, p.actual_qty, p.reject_qty, p.status,
       (select u.id from adm_user u where u.username = 'jane.smith' and u.deleted_at is null),
       pg_temp.demo_ts(p.start_dt - 3, interval '10:00'),
       case p.status
           when 'Completed' then pg_temp.demo_ts(p.end_dt + 1, interval '07:00')
           when 'In Progress' then pg_temp.demo_ts((select c.today from demo_ctx c), interval '07:00')
           else pg_temp.demo_ts(p.start_dt - 3, interval '10:00')
       end
from demo_wo p
order by p.start_dt, p.no
on conflict (doc_no) do nothing;

-- QC: Monday, Wednesday and Friday of each running/finished WO; defects follow that day's
-- reject rate; grade A <= 1.5%, B <= 3%, C <= 6%, else Reject
insert into t_qc (wo_id, check_dt, sample_size, defect_count, grade, notes, created_at, updated_at)
select w.id, q.check_dt, q.sample_size, q.defect_count,
       case
           when q.defect_count <= q.sample_size * 0.015 then 'A'
           when q.defect_count <= q.sample_size * 0.03 then 'B'
           when q.defect_count <= q.sample_size * 0.06 then 'C'
           else 'Reject'
       end,
       case
           when q.defect_count > q.sample_size * 0.06 and q.mch = 'MCH-003'
               then 'Porositas dan spatter las melebihi batas, lot ditahan untuk sortir'
           when q.defect_count > q.sample_size * 0.06 then 'Defect melebihi batas, lot ditahan untuk sortir'
           when q.defect_count > q.sample_size * 0.03 then 'Defect mendekati batas, perlu perhatian'
       end,
       pg_temp.demo_ts(q.check_dt, interval '14:00'), pg_temp.demo_ts(q.check_dt, interval '14:00')
from (
    select p.doc_no, p.mch, p.start_dt + o.off as check_dt, m.qc_sample as sample_size,
           least(m.qc_sample,
                 round(m.qc_sample * sd.rate * (0.6 + 0.8 * pg_temp.demo_u('qc' || p.doc_no || o.off)))::int) as defect_count
    from demo_wo p
    join demo_mch m on m.code = p.mch
    cross join (values (0), (2), (4)) as o (off)
    join (
        select x.mch, x.log_dt, sum(x.reject_qty) / nullif(sum(x.output_qty), 0) as rate
        from demo_shift x
        group by x.mch, x.log_dt
    ) as sd on sd.mch = p.mch and sd.log_dt = p.start_dt + o.off
    where p.status <> 'Scheduled'
) as q
join t_wo w on w.doc_no = q.doc_no and w.deleted_at is null and w.status in ('Completed', 'In Progress')
order by q.check_dt, w.id
on conflict (wo_id, check_dt) do nothing;

-- =============================================================================================
-- H. stock moves of the last 14 days: shipments out, PO receipts in, finished WO output in.
-- (Illustrative: they are not reconciled with the t_inv balances above.)
-- =============================================================================================
insert into t_inv_move (item_id, wh_from, wh_to, qty, move_type, ref_doc, move_at, created_at, updated_at)
select l.item_id,
       (select w.id from m_wh w where w.code = case when i.code = 'ITM-003' then 'WH-C1' else 'WH-B1' end
                                  and w.deleted_at is null),
       null, l.qty, 'OUT', d.doc_no,
       pg_temp.demo_ts(d.ship_dt, interval '08:00'), pg_temp.demo_ts(d.ship_dt, interval '08:00'),
       pg_temp.demo_ts(d.ship_dt, interval '08:00')
from demo_so p
join t_do d on d.doc_no = p.do_no and d.deleted_at is null
join t_so_detail l on l.so_id = d.so_id and l.deleted_at is null
join m_item i on i.id = l.item_id
cross join demo_ctx c
where d.status in ('Shipped', 'In Transit', 'Delivered') and d.ship_dt > c.today - 14
order by d.ship_dt, d.doc_no, l.item_id
on conflict (ref_doc, item_id, move_type) do nothing;

insert into t_inv_move (item_id, wh_from, wh_to, qty, move_type, ref_doc, move_at, created_at, updated_at)
select l.item_id, null,
       (select w.id from m_wh w where w.code = case when i.code = 'ITM-005' then 'WH-B1' else 'WH-A1' end
                                  and w.deleted_at is null),
       l.qty, 'IN', t.doc_no,
       pg_temp.demo_ts(p.recv_dt, interval '13:00'), pg_temp.demo_ts(p.recv_dt, interval '13:00'),
       pg_temp.demo_ts(p.recv_dt, interval '13:00')
from demo_po p
join t_po t on t.doc_no = p.doc_no and t.deleted_at is null
join t_po_detail l on l.po_id = t.id and l.deleted_at is null
join m_item i on i.id = l.item_id
cross join demo_ctx c
where t.status = 'Received' and p.recv_dt > c.today - 14
order by p.recv_dt, t.doc_no, l.item_id
on conflict (ref_doc, item_id, move_type) do nothing;

insert into t_inv_move (item_id, wh_from, wh_to, qty, move_type, ref_doc, move_at, created_at, updated_at)
select w.item_id, null,
       (select h.id from m_wh h where h.code = case when p.item = 'ITM-003' then 'WH-C1' else 'WH-B1' end
                                  and h.deleted_at is null),
       w.actual_qty - w.reject_qty, 'IN', w.doc_no,
       pg_temp.demo_ts(p.end_dt + 1, interval '07:00'), pg_temp.demo_ts(p.end_dt + 1, interval '07:00'),
       pg_temp.demo_ts(p.end_dt + 1, interval '07:00')
from demo_wo p
join t_wo w on w.doc_no = p.doc_no and w.deleted_at is null
cross join demo_ctx c
where w.status = 'Completed' and p.end_dt > c.today - 14
order by p.end_dt, w.doc_no
on conflict (ref_doc, item_id, move_type) do nothing;

-- =============================================================================================
-- I. status history (log_status) of the orders and deliveries of the last 30 days, following
-- each document's stored status. Timestamps are deterministic, so re-runs add nothing.
-- =============================================================================================
insert into log_status (entity_type, entity_id, old_status, new_status, changed_at, changed_by, duration_min)
select 'SO', t.id, t.old_status, t.new_status, t.changed_at, t.changed_by,
       (extract(epoch from t.changed_at - lag(t.changed_at) over (partition by t.id order by t.changed_at)) / 60)::int
from (
    select s.id, st.old_status, st.new_status, st.changed_at,
           (select u.id from adm_user u where u.username = 'john.doe' and u.deleted_at is null) as changed_by
    from demo_so p
    join t_so s on s.doc_no = p.doc_no and s.deleted_at is null
    cross join demo_ctx c
    cross join lateral (values
        (null, 'Draft', p.created_ts, true),
        ('Draft', 'Pending', p.created_ts + interval '15 minutes', s.status <> 'Draft'),
        ('Pending', 'Approved', p.approved_ts, s.status in ('Approved', 'Open', 'Closed')),
        ('Approved', 'Open', pg_temp.demo_ts(p.ship_dt, interval '08:00'), s.status in ('Open', 'Closed')),
        ('Open', 'Closed', pg_temp.demo_ts(p.close_dt, interval '16:00'), s.status = 'Closed'),
        ('Pending', 'Cancel', pg_temp.demo_ts(p.order_dt + 1, interval '11:00'), s.status = 'Cancel')
    ) as st (old_status, new_status, changed_at, reached)
    where st.reached and p.order_dt > c.today - 30
) as t
order by t.changed_at, t.id
on conflict (entity_type, entity_id, new_status, changed_at) do nothing;

insert into log_status (entity_type, entity_id, old_status, new_status, changed_at, duration_min)
select 'DO', t.id, t.old_status, t.new_status, t.changed_at,
       (extract(epoch from t.changed_at - lag(t.changed_at) over (partition by t.id order by t.changed_at)) / 60)::int
from (
    select d.id, st.old_status, st.new_status, st.changed_at
    from demo_so p
    join t_do d on d.doc_no = p.do_no and d.deleted_at is null
    cross join demo_ctx c
    cross join lateral (values
        (null, 'Pending', p.approved_ts + interval '30 minutes', true),
        ('Pending', 'Shipped', pg_temp.demo_ts(p.ship_dt, interval '08:00'),
         d.status in ('Shipped', 'In Transit', 'Delivered')),
        ('Shipped', 'In Transit', pg_temp.demo_ts(p.ship_dt + 1, interval '06:00'), d.status in ('In Transit', 'Delivered')),
        ('In Transit', 'Delivered', pg_temp.demo_ts(p.actual_dt, interval '14:00'), d.status = 'Delivered')
    ) as st (old_status, new_status, changed_at, reached)
    where st.reached and p.order_dt > c.today - 30
) as t
order by t.changed_at, t.id
on conflict (entity_type, entity_id, new_status, changed_at) do nothing;

-- =============================================================================================
-- J. derived master columns (idempotent; they only move forward)
-- =============================================================================================
update m_machine mm
set last_maint_dt = x.dt
from (
    select t.machine_id, max(t.maint_dt) as dt
    from t_maint t
    cross join demo_ctx c
    where t.deleted_at is null and t.maint_dt <= c.today
    group by t.machine_id
) as x
where mm.id = x.machine_id and (mm.last_maint_dt is null or mm.last_maint_dt < x.dt);

update m_cust mc
set last_order_dt = x.dt
from (
    select s.cust_id, max(s.order_dt) as dt
    from t_so s
    where s.deleted_at is null and s.status not in ('Draft', 'Cancel')
    group by s.cust_id
) as x
where mc.id = x.cust_id and (mc.last_order_dt is null or mc.last_order_dt < x.dt);

update t_inv i
set last_move_dt = x.dt
from (
    select y.item_id, y.wh_id, max((y.move_at at time zone 'Asia/Jakarta')::date) as dt
    from (
        select item_id, wh_from as wh_id, move_at from t_inv_move where wh_from is not null and deleted_at is null
        union all
        select item_id, wh_to, move_at from t_inv_move where wh_to is not null and deleted_at is null
    ) as y
    group by y.item_id, y.wh_id
) as x
where i.item_id = x.item_id and i.wh_id = x.wh_id and (i.last_move_dt is null or i.last_move_dt < x.dt);

-- =============================================================================================
-- bank balances (t_bank_bal): the operating account at BCA and the payroll account at Mandiri,
-- one closing balance per calendar day of the window, around the blueprint's cash balance of
-- Rp 1.25 bn (the two together vary by at most Rp 200 m either way, in steps of Rp 100,000).
-- =============================================================================================
insert into t_bank_bal (bank_acc, bank_name, bal_dt, bal_amt, created_at, updated_at)
select a.acc, a.bank, d.d,
       a.base + round((pg_temp.demo_u('bank-' || a.acc || '-' || d.ymd) - 0.5) * a.swing, -5),
       pg_temp.demo_ts(d.d, interval '23:00'), pg_temp.demo_ts(d.d, interval '23:00')
from demo_day d
cross join (values
    ('1230045678', 'BCA', 900000000, 300000000),
    ('1370098765', 'Mandiri', 350000000, 100000000)
) as a (acc, bank, base, swing)
on conflict (bank_acc, bal_dt) do nothing;

-- ---------------------------------------------------------------------------------------------
-- clean up the scratch objects (the pooled connection lives on)
-- ---------------------------------------------------------------------------------------------
drop table pg_temp.demo_ctx, pg_temp.demo_day, pg_temp.demo_so, pg_temp.demo_so_line, pg_temp.demo_po,
    pg_temp.demo_po_line, pg_temp.demo_mch, pg_temp.demo_maint, pg_temp.demo_shift, pg_temp.demo_wo;
drop function pg_temp.demo_ts(date, interval);
drop function pg_temp.demo_u(text);
drop function pg_temp.demo_h(text);
