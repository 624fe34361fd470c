-- RBAC seed (blueprint 1.7 D and E): permission catalogue, default roles, their permissions,
-- the sidebar menu and the role-menu mapping, so a fresh database is usable.
-- No users are seeded: the first admin is created through the CLI.

-- Permission catalogue. code = module || '.' || action.
insert into adm_permission (code, module, action, name, description)
select v.module || '.' || v.action, v.module, v.action, v.name, v.description
from (values
    ('SO', 'CREATE', 'Buat Sales Order', 'Membuat sales order baru'),
    ('SO', 'READ', 'Lihat Sales Order', 'Melihat daftar dan detail sales order'),
    ('SO', 'UPDATE', 'Ubah Sales Order', 'Mengubah sales order'),
    ('SO', 'DELETE', 'Hapus Sales Order', 'Menghapus sales order'),
    ('SO', 'APPROVE', 'Approve Sales Order', 'Menyetujui sales order'),
    ('SO', 'EXPORT', 'Export Sales Order', 'Export sales order ke Excel/PDF'),

    ('DO', 'CREATE', 'Buat Delivery Order', 'Membuat surat jalan / delivery order baru'),
    ('DO', 'READ', 'Lihat Delivery Order', 'Melihat daftar dan status pengiriman'),
    ('DO', 'UPDATE', 'Ubah Delivery Order', 'Mengubah delivery order dan status pengiriman'),
    ('DO', 'DELETE', 'Hapus Delivery Order', 'Menghapus delivery order'),
    ('DO', 'EXPORT', 'Export Delivery Order', 'Export delivery order ke Excel/PDF'),

    ('PO', 'CREATE', 'Buat Purchase Order', 'Membuat purchase order baru'),
    ('PO', 'READ', 'Lihat Purchase Order', 'Melihat daftar dan detail purchase order'),
    ('PO', 'UPDATE', 'Ubah Purchase Order', 'Mengubah purchase order'),
    ('PO', 'DELETE', 'Hapus Purchase Order', 'Menghapus purchase order'),
    ('PO', 'APPROVE', 'Approve Purchase Order', 'Menyetujui purchase order'),
    ('PO', 'EXPORT', 'Export Purchase Order', 'Export purchase order ke Excel/PDF'),

    ('WO', 'CREATE', 'Buat Work Order', 'Membuat work order produksi baru'),
    ('WO', 'READ', 'Lihat Work Order', 'Melihat jadwal dan progres work order'),
    ('WO', 'UPDATE', 'Ubah Work Order', 'Mengubah work order dan progres produksi'),
    ('WO', 'DELETE', 'Hapus Work Order', 'Menghapus work order'),
    ('WO', 'EXPORT', 'Export Work Order', 'Export work order ke Excel/PDF'),
    ('WO', 'SHIFT_LOG', 'Input Shift Log', 'Input log produksi per shift (output, reject, downtime)'),

    ('INV', 'CREATE', 'Buat Mutasi Stok', 'Mencatat mutasi stok (masuk/keluar/transfer)'),
    ('INV', 'READ', 'Lihat Stok', 'Melihat stok per item dan gudang'),
    ('INV', 'UPDATE', 'Ubah Stok', 'Mengubah / menyesuaikan stok'),
    ('INV', 'DELETE', 'Hapus Mutasi Stok', 'Menghapus mutasi stok'),
    ('INV', 'EXPORT', 'Export Stok', 'Export data stok ke Excel/PDF'),

    ('FIN', 'CREATE', 'Buat Data Keuangan', 'Membuat piutang / hutang baru'),
    ('FIN', 'READ', 'Lihat Keuangan', 'Melihat piutang, hutang dan kas'),
    ('FIN', 'UPDATE', 'Ubah Data Keuangan', 'Mengubah piutang / hutang, mencatat pembayaran'),
    ('FIN', 'DELETE', 'Hapus Data Keuangan', 'Menghapus piutang / hutang'),
    ('FIN', 'APPROVE', 'Approve Pembayaran', 'Menyetujui pembayaran'),
    ('FIN', 'EXPORT', 'Export Keuangan', 'Export data keuangan ke Excel/PDF'),

    ('QC', 'CREATE', 'Buat Quality Check', 'Mencatat hasil quality check'),
    ('QC', 'READ', 'Lihat Quality Check', 'Melihat hasil quality check'),
    ('QC', 'UPDATE', 'Ubah Quality Check', 'Mengubah hasil quality check'),
    ('QC', 'DELETE', 'Hapus Quality Check', 'Menghapus hasil quality check'),
    ('QC', 'EXPORT', 'Export Quality Check', 'Export hasil quality check ke Excel/PDF'),

    ('MAINT', 'CREATE', 'Buat Maintenance', 'Mencatat maintenance mesin'),
    ('MAINT', 'READ', 'Lihat Maintenance', 'Melihat riwayat maintenance mesin'),
    ('MAINT', 'UPDATE', 'Ubah Maintenance', 'Mengubah catatan maintenance'),
    ('MAINT', 'DELETE', 'Hapus Maintenance', 'Menghapus catatan maintenance'),
    ('MAINT', 'EXPORT', 'Export Maintenance', 'Export riwayat maintenance ke Excel/PDF'),

    ('ALERT', 'READ', 'Lihat Alert', 'Melihat dan menerima alert'),
    ('ALERT', 'ACK', 'Konfirmasi Alert', 'Menandai alert sudah ditangani (acknowledge)'),
    ('ALERT', 'MANAGE', 'Kelola Alert', 'Mengelola alert dan penerima alert'),

    ('AI', 'CHAT', 'Chat WhatsApp AI', 'Boleh bertanya ke bot WhatsApp (Executive Hub)'),

    ('ADMIN', 'USER.CREATE', 'Buat User', 'Membuat user baru'),
    ('ADMIN', 'USER.READ', 'Lihat User', 'Melihat daftar user'),
    ('ADMIN', 'USER.UPDATE', 'Ubah User', 'Mengubah user, aktivasi / deaktivasi'),
    ('ADMIN', 'USER.DELETE', 'Hapus User', 'Menghapus user'),
    ('ADMIN', 'USER.RESET_PWD', 'Reset Password User', 'Reset password user'),
    ('ADMIN', 'ROLE.MANAGE', 'Kelola Role', 'Kelola role & permission'),
    ('ADMIN', 'AUDIT.VIEW', 'Lihat Audit Log', 'Lihat audit log dan log chat'),
    ('ADMIN', 'SESSION.MANAGE', 'Kelola Session', 'Lihat user aktif, force logout')
) as v (module, action, name, description)
on conflict (code) do nothing;

-- Default roles (1.7 E). Level 1 = highest.
insert into adm_role (code, name, description, level, is_system)
values
    ('SYSADMIN', 'System Admin', 'Full access semua modul', 1, true),
    ('DIRECTOR', 'Direktur', 'Read all, Approve all', 5, true),
    ('MANAGER_SALES', 'Sales Manager', 'Full SO, Read PO/WO', 10, false),
    ('MANAGER_PROD', 'Production Manager', 'Full WO, Read SO', 10, false),
    ('STAFF_SALES', 'Sales Staff', 'Create/Read SO', 50, false),
    ('STAFF_WH', 'Warehouse Staff', 'Read/Update Inventory', 50, false),
    ('OPERATOR', 'Operator Produksi', 'Read WO, Input shift_log', 80, false),
    ('READONLY', 'Read Only', 'Read all, No edit', 99, true)
on conflict (code) do nothing;

-- Role -> permission mapping, following the role descriptions.
insert into adm_role_permission (role_id, permission_id)
select r.id, p.id
from adm_role r
join adm_permission p on case r.code
    when 'SYSADMIN' then true
    when 'DIRECTOR' then
        (p.module <> 'ADMIN' and p.action in ('READ', 'APPROVE', 'EXPORT'))
        or p.module = 'ALERT'
        or p.code = 'AI.CHAT'
    when 'MANAGER_SALES' then
        p.module in ('SO', 'DO')
        or p.code in ('PO.READ', 'WO.READ', 'INV.READ', 'FIN.READ', 'ALERT.READ', 'ALERT.ACK', 'AI.CHAT')
    when 'MANAGER_PROD' then
        p.module in ('WO', 'QC', 'MAINT')
        or p.code in ('SO.READ', 'INV.READ', 'PO.READ', 'ALERT.READ', 'ALERT.ACK', 'AI.CHAT')
    when 'STAFF_SALES' then
        p.code in ('SO.CREATE', 'SO.READ', 'DO.READ', 'INV.READ', 'AI.CHAT')
    when 'STAFF_WH' then
        p.code in ('INV.READ', 'INV.UPDATE', 'DO.READ', 'PO.READ', 'AI.CHAT')
    when 'OPERATOR' then
        p.code in ('WO.READ', 'WO.SHIFT_LOG', 'QC.READ', 'MAINT.READ', 'ALERT.READ', 'AI.CHAT')
    when 'READONLY' then
        (p.module <> 'ADMIN' and p.action = 'READ')
        or p.code = 'AI.CHAT'
    else false
end
on conflict (role_id, permission_id) do nothing;

-- Sidebar menu tree. Group nodes have no permission; a leaf without permission (Dashboard)
-- is visible to every role.
insert into adm_menu (code, name, icon, path, parent_id, sort_order, permission_code)
values
    ('MENU_DASHBOARD', 'Dashboard', 'fa-gauge', '/dashboard', null, 10, null),
    ('MENU_SALES', 'Sales', 'fa-shopping-cart', null, null, 20, null),
    ('MENU_PURCHASING', 'Purchasing', 'fa-truck-ramp-box', null, null, 30, null),
    ('MENU_PRODUCTION', 'Production', 'fa-industry', null, null, 40, null),
    ('MENU_INVENTORY', 'Inventory', 'fa-boxes-stacked', '/inventory', null, 50, 'INV.READ'),
    ('MENU_FINANCE', 'Finance', 'fa-money-bill', null, null, 60, null),
    ('MENU_AI', 'AI', 'fa-robot', null, null, 70, null),
    ('MENU_ADMIN', 'Administrator', 'fa-user-shield', null, null, 90, null)
on conflict (code) do nothing;

insert into adm_menu (code, name, icon, path, parent_id, sort_order, permission_code)
select v.code, v.name, v.icon, v.path, parent.id, v.sort_order, v.permission_code
from (values
    ('MENU_SO', 'MENU_SALES', 'Sales Order', 'fa-file-invoice', '/sales-order', 10, 'SO.READ'),
    ('MENU_DO', 'MENU_SALES', 'Delivery Order', 'fa-truck', '/delivery-order', 20, 'DO.READ'),
    ('MENU_PO', 'MENU_PURCHASING', 'Purchase Order', 'fa-cart-flatbed', '/purchase-order', 10, 'PO.READ'),
    ('MENU_WO', 'MENU_PRODUCTION', 'Work Order', 'fa-gears', '/work-order', 10, 'WO.READ'),
    ('MENU_QC', 'MENU_PRODUCTION', 'Quality Control', 'fa-clipboard-check', '/quality-check', 20, 'QC.READ'),
    ('MENU_MAINT', 'MENU_PRODUCTION', 'Maintenance', 'fa-screwdriver-wrench', '/maintenance', 30, 'MAINT.READ'),
    ('MENU_AR', 'MENU_FINANCE', 'Piutang (AR)', 'fa-hand-holding-dollar', '/finance/ar', 10, 'FIN.READ'),
    ('MENU_AP', 'MENU_FINANCE', 'Hutang (AP)', 'fa-file-invoice-dollar', '/finance/ap', 20, 'FIN.READ'),
    -- chat logs of all users are audit material
    ('MENU_AI_CHAT', 'MENU_AI', 'Chats', 'fa-comments', '/ai/chats', 10, 'ADMIN.AUDIT.VIEW'),
    ('MENU_AI_ALERT', 'MENU_AI', 'Alerts', 'fa-bell', '/ai/alerts', 20, 'ALERT.READ'),
    ('MENU_ADM_USER', 'MENU_ADMIN', 'Users', 'fa-users', '/admin/users', 10, 'ADMIN.USER.READ'),
    ('MENU_ADM_ROLE', 'MENU_ADMIN', 'Roles', 'fa-user-tag', '/admin/roles', 20, 'ADMIN.ROLE.MANAGE'),
    ('MENU_ADM_SESSION', 'MENU_ADMIN', 'Sessions', 'fa-desktop', '/admin/sessions', 30, 'ADMIN.SESSION.MANAGE'),
    ('MENU_ADM_AUDIT', 'MENU_ADMIN', 'Audit Log', 'fa-clock-rotate-left', '/admin/audit', 40, 'ADMIN.AUDIT.VIEW')
) as v (code, parent_code, name, icon, path, sort_order, permission_code)
join adm_menu parent on parent.code = v.parent_code
on conflict (code) do nothing;

-- Role -> menu: every menu whose permission the role holds, every permission-free leaf,
-- and all ancestors of those (group nodes appear only when they have a visible child).
insert into adm_role_menu (role_id, menu_id)
with recursive granted (role_id, menu_id, parent_id) as (
    select rp.role_id, m.id, m.parent_id
    from adm_menu m
    join adm_permission p on p.code = m.permission_code
    join adm_role_permission rp on rp.permission_id = p.id
    union
    select r.id, m.id, m.parent_id
    from adm_role r
    cross join adm_menu m
    where m.permission_code is null
      and not exists (select 1 from adm_menu c where c.parent_id = m.id)
    union
    select g.role_id, m.id, m.parent_id
    from granted g
    join adm_menu m on m.id = g.parent_id
)
select distinct role_id, menu_id
from granted
on conflict (role_id, menu_id) do nothing;
