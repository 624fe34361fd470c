//! Which module's data a permission holder may read, as SQL conditions: the one rule the alert
//! routing, the acknowledgement, the admin alert list and the brain's alert answer share.

/// SQL condition: an alert of module `module` (an SQL expression) is data that the holder of the
/// permission codes `permissions` (an SQL `text[]` expression) may read. A module with a read
/// permission in the catalogue (`FIN.READ` …) needs it: a finance alert is finance data; any
/// other module (SYS …) needs nothing beyond `ALERT.READ`, which callers check themselves.
pub fn module_readable(module: &str, permissions: &str) -> String {
    format!(
        "({module} || '.READ' = any({permissions})
          or not exists (select 1 from adm_permission mp where mp.code = {module} || '.READ'))"
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
