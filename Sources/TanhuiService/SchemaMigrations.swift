package import TanhuiPostgres

/// The schema this binary was built with (embedded by `Scripts/gen-migrations.sh`).
package enum SchemaMigrations {
    package static func migrator(pool: PostgresPool) -> Migrator {
        Migrator(pool: pool, migrations: all)
    }
}
