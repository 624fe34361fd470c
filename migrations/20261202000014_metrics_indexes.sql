-- Indexes for the metrics layer's period-bounded reads (src/metrics): the big tables by their
-- date with the columns the catalogue's measures sum, so a period reads the index alone; order
-- lines by their order, for line-level measures (units, margins, a cut by item).
create index t_so_period_idx on t_so (order_dt) include (id, cust_id, total_amt, disc_pct, status)
    where deleted_at is null;
create index t_so_detail_order_idx on t_so_detail (so_id) include (item_id, qty, line_amt)
    where deleted_at is null;
create index t_shift_log_period_idx on t_shift_log (log_dt)
    include (machine_id, emp_id, shift, output_qty, reject_qty, downtime_min) where deleted_at is null;
