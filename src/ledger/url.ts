// Ledger locations: which backend a URL names, and how it may be printed.

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** A ledger's location as it is safe to print: a PostgreSQL URL loses its password. */
export function safeLedgerUrl(url: string): string {
  if (!isPostgresUrl(url)) return url;
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.searchParams.delete('password');
    return parsed.toString().replace(/^(postgres(?:ql)?:\/\/[^:@/]*):@/, '$1@');
  } catch {
    return 'postgres://(an unparsable URL)';
  }
}
