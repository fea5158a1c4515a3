// GraphQL-over-HTTP spec conformance, as audited by graphql-http.
// Every MUST has to pass; SHOULD/MAY results that are not ok are printed as warnings.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { auditServer } from 'graphql-http';

import { useServer } from '../lib/server.mjs';

const T = { timeout: 60_000 };

describe('graphql-http audit', { timeout: 90_000 }, () => {
  const server = useServer({ PROCESSING_TIME: '20ms' }, { label: 'audit' });

  it('passes every MUST audit of the GraphQL-over-HTTP spec', T, async () => {
    const results = await auditServer({ url: `${server.url}/query` });
    assert.ok(results.length > 0, 'the audit ran');

    const describeResult = async (r) => {
      let body = '';
      if (r.response) {
        try {
          body = (await r.response.clone().text()).slice(0, 300);
        } catch {
          body = '(body unavailable)';
        }
      }
      return `[${r.status}] ${r.id} ${r.name}: ${r.reason}${r.response ? ` (HTTP ${r.response.status} ${body})` : ''}`;
    };

    const counts = { ok: 0, notOk: 0 };
    const mustFailures = [];
    const warnings = [];
    for (const r of results) {
      if (!r.id) continue;
      if (r.status === 'ok') {
        counts.ok++;
        continue;
      }
      counts.notOk++;
      if (r.name.startsWith('MUST')) mustFailures.push(await describeResult(r));
      else warnings.push(await describeResult(r));
    }

    console.log(`graphql-http audit: ${results.length} audits, ${counts.ok} ok, ${counts.notOk} not ok`);
    if (warnings.length > 0) {
      console.log(`graphql-http audit: ${warnings.length} SHOULD/MAY not ok (warnings, not failures):`);
      for (const w of warnings) console.log(`  ${w}`);
    }
    assert.deepEqual(mustFailures, [], `MUST audits failed:\n${mustFailures.join('\n')}`);
  });
});
