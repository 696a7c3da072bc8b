import TanhuiPostgres

/// The schema this binary was built with (embedded by `Scripts/gen-migrations.sh`).
public enum SchemaMigrations {
    public static func migrator(pool: PostgresPool) -> Migrator {
        Migrator(pool: pool, migrations: all)
    }
}
