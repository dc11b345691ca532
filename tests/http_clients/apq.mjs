// Apollo Client's own persisted-query link against a CareForAll server:
// prints each HTTP request it made and what it got, as JSON lines.
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const url = process.argv[2];
const seen = [];
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const text = await response.clone().text();
  seen.push({ method: init?.method ?? 'GET', url: String(input), body: init?.body ?? null,
              status: response.status, answer: text });
  return response;
}
const sha256 = (q) => createHash('sha256').update(q).digest('hex');
const client = new ApolloClient({
  cache: new InMemoryCache(),
  link: new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: url, fetch: recordingFetch })),
});
const QUERY = gql`query Campaigns { campaigns(first: 5) { edges { node { id title } } } }`;
const first = await client.query({ query: QUERY, fetchPolicy: 'network-only' });
const second = await client.query({ query: QUERY, fetchPolicy: 'network-only' });
console.log(JSON.stringify({ requests: seen, first: first.data, second: second.data }));
