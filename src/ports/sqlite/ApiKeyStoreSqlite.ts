/** ApiKeyStore on the embedded SQLite database: the dialect-neutral store (../sql/ApiKeyStoreSql.ts). */
export { ApiKeyStoreSql as ApiKeyStoreSqlite } from "../sql/ApiKeyStoreSql.js";
