//! The databases a test creates (through the services it starts), and dropping them when the
//! test is done, whether it passed or not.

/// Drops `databases` on the server at `postgres` (a URL without a database), ending the
/// sessions still connected to them. It is called from `Drop`, which runs inside the test's
/// runtime: the clean-up gets a thread and a runtime of its own, and leaves the connections of
/// the blocked runtime to `WITH (FORCE)`. A failure is ignored: the databases' names are
/// unique, so one left behind disturbs no other test.
pub(crate) fn drop_databases(postgres: String, databases: Vec<String>) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let admin = sqlx::PgPool::connect(&format!("{postgres}/postgres")).await?;
            for database in databases {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
            }
            anyhow::Ok(())
        })
    })
    .join();
}
