//! Which module's data a permission holder may read, as SQL conditions: the one rule the alert
//! routing, the acknowledgement, the admin alert list and the brain's alert answer share.

/// SQL condition: an alert of module `module` (an SQL expression) is data that the holder of the
/// permission codes `permissions` (an SQL `text[]` expression) may read. The module's read
/// permission comes from the explicit map `ai_alert_module` (FIN → `FIN.READ`, SYS →
/// `ALERT.READ` …): a finance alert is finance data. A module the map does not name fails
/// closed: only `ALERT.MANAGE` reads it. Callers check `ALERT.READ` themselves.
pub fn module_readable(module: &str, permissions: &str) -> String {
    format!(
        "coalesce((select am.read_perm = any({permissions}) from ai_alert_module am
                   where am.module = {module}),
                  'ALERT.MANAGE' = any({permissions}))"
    )
}

/// [`module_readable`] for the role with id `role` (an SQL expression).
pub fn module_readable_by_role(module: &str, role: &str) -> String {
    module_readable(
        module,
        &format!(
            "array(select mp.code from adm_role_permission mrp
                   join adm_permission mp on mp.id = mrp.permission_id where mrp.role_id = {role})"
        ),
    )
}
