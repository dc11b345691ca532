// The graphql-http package's audit of a GraphQL over HTTP server (every
// MUST, SHOULD and MAY of the specification it checks): one JSON line with
// each check's id, name, status and reason.
import { auditServer } from 'graphql-http';

const results = await auditServer({ url: process.argv[2] });
console.log(JSON.stringify(results.map(({ id, name, status, reason }) =>
  ({ id, name, status, reason: reason ?? null }))));
