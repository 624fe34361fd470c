-- Scale-up of the demo data for benchmarks (`sentient-hub demo --scale N`): N - 1 more times the
-- generated history's volume over the same 13 months — customers, items, machines, sales
-- orders with their lines, shift logs — on top of demo.sql. Deterministic (md5 of a slot, never
-- random()); idempotent like demo.sql (natural keys, on conflict do nothing). The added rows
-- carry an "S" in their codes and document numbers. The scale comes in as the transaction
-- setting `demo.scale` (src/db/demo.rs).

set local jit = off;

create temp table scale_ctx on commit drop as
select greatest(current_setting('demo.scale')::int - 1, 0) as k,
       (now() at time zone 'Asia/Jakarta')::date as today,
       ((now() at time zone 'Asia/Jakarta')::date - interval '13 months')::date as start_dt;

create or replace function pg_temp.scale_h(seed text) returns int
    language sql immutable
    as $$ select ('x' || substr(md5(seed), 1, 7))::bit(28)::int $$;

insert into m_cust (code, name, segment, credit_lim)
select 'CUST-S' || lpad(g::text, 5, '0'), 'Scale Customer ' || g,
       case when g % 3 = 0 then 'VIP' else 'Regular' end, 500000000
from scale_ctx, generate_series(1, k * 5) g
on conflict do nothing;

insert into m_item (code, name, category, std_cost, sell_price, uom, min_stock)
select 'ITM-S' || lpad(g::text, 5, '0'), 'Scale Item ' || g,
       (array['Finished Goods', 'Raw Material', 'WIP', 'Component'])[1 + g % 4],
       10000 + pg_temp.scale_h('cost' || g) % 200 * 1000,
       case when g % 4 in (0, 3) then (10000 + pg_temp.scale_h('cost' || g) % 200 * 1000) * 1.4 end,
       'PCS', 100
from scale_ctx, generate_series(1, k * 5) g
on conflict do nothing;

insert into m_machine (code, name, location, cap_per_hr, run_hours)
select 'MCH-S' || lpad(g::text, 4, '0'), 'Scale Machine ' || g, 'Line S', 80 + g % 6 * 20, 0
from scale_ctx, generate_series(1, k * 3) g
on conflict do nothing;

create temp table scale_pick on commit drop as
select (select array_agg(id order by id) from m_cust where deleted_at is null) as custs,
       (select array_agg(id order by id) from m_item where deleted_at is null
          and (sell_price is not null or code like 'ITM-S%')) as items;

-- About as many orders per scale step as the base history holds (1,050 over 13 months); their
-- lines first, so each order is inserted with its total.
create temp table scale_so on commit drop as
select 'SO-S' || lpad(g::text, 8, '0') as doc_no,
       p.custs[1 + h.v % cardinality(p.custs)] as cust_id,
       d.dt,
       case when h.v % 10 = 0 then 1.00 else 0 end as disc_pct,
       case when d.dt < c.today - 20 then 'Closed' when h.v % 7 = 0 then 'Pending' else 'Open' end as status
from scale_ctx c, scale_pick p, generate_series(1, c.k * 1050) g
cross join lateral (select pg_temp.scale_h('so' || g) as v) h
cross join lateral (select c.start_dt + h.v % (c.today - c.start_dt + 1) as dt) d;

create temp table scale_line on commit drop as
select distinct on (s.doc_no, x.item_id) s.doc_no, x.item_id,
       10 + pg_temp.scale_h('qty' || s.doc_no || x.l) % 190 as qty
from scale_so s
cross join scale_pick p
cross join lateral (
    select l, p.items[1 + pg_temp.scale_h('item' || s.doc_no || l) % cardinality(p.items)] as item_id
    from generate_series(1, 1 + pg_temp.scale_h('lines' || s.doc_no) % 3) l
) x
order by s.doc_no, x.item_id, x.l;

insert into t_so (doc_no, cust_id, order_dt, deadline_dt, total_amt, disc_pct, status, created_at, updated_at)
select s.doc_no, s.cust_id, s.dt, s.dt + 14,
       round(t.amt * (1 - s.disc_pct / 100), 2), s.disc_pct, s.status, s.dt::timestamptz, s.dt::timestamptz
from scale_so s
join (select l.doc_no, sum(round(l.qty * coalesce(i.sell_price, i.std_cost * 1.4), 2)) as amt
      from scale_line l join m_item i on i.id = l.item_id group by l.doc_no) t on t.doc_no = s.doc_no
on conflict (doc_no) do nothing;

insert into t_so_detail (so_id, item_id, qty, unit_price, disc_pct)
select so.id, l.item_id, l.qty, coalesce(i.sell_price, i.std_cost * 1.4), 0
from scale_line l
join t_so so on so.doc_no = l.doc_no
join m_item i on i.id = l.item_id
on conflict (so_id, item_id) do nothing;

-- Three shifts a day on every added machine.
insert into t_shift_log (machine_id, log_dt, shift, output_qty, reject_qty, downtime_min, error_code)
select m.id, d::date, sh::text, o.output, round(o.output * (pg_temp.scale_h('rej' || m.code || d || sh) % 60) / 1000.0),
       dt.down, case when dt.down > 30 then 'E-101 Overheat' end
from scale_ctx c
join m_machine m on m.code like 'MCH-S%'
cross join generate_series(c.start_dt, c.today, interval '1 day') d
cross join generate_series(1, 3) sh
cross join lateral (select pg_temp.scale_h('down' || m.code || d || sh) % 60 as down) dt
cross join lateral (select round(m.cap_per_hr * (480 - dt.down) / 60.0
                                 * (70 + pg_temp.scale_h('out' || m.code || d || sh) % 25) / 100) as output) o
on conflict (machine_id, log_dt, shift) do nothing;
