/**
 * NIST ACVP known answers for the C verifier's ML-DSA-87 (PQClean, via
 * verifier/mldsa.c, the function qwamos-verify calls). PQClean's API has
 * only pure ML-DSA with a context string, so the C side runs the pure
 * external sigVer cases; the HashML-DSA and internal-interface cases have
 * no C entry point and run only in test/signing/acvp.test.ts. The valid
 * sigGen signatures, and copies of them with one changed byte, add cases.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTool } from '../../core/exec.js';
import { buildVerifierTestPrograms, type VerifierTestPrograms } from '../../signing/verifier-build.js';
import { readAcvpGroups } from './fixtures.js';

interface VerifyCase {
  name: string;
  pk: string;
  message: string;
  context: string;
  signature: string;
  expected: boolean;
}

let scratch: string;
let programs: VerifierTestPrograms;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'qwamos-acvp-c-'));
  programs = await buildVerifierTestPrograms({ target: 'host', outDir: scratch });
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Runs the C driver over `cases` and returns its verdicts in order. */
async function verifyInC(cases: VerifyCase[]): Promise<boolean[]> {
  const field = (value: string): string => (value === '' ? '-' : value);
  const input = cases.map((c) => [c.pk, c.message, c.context, c.signature].map(field).join(' ')).join('\n');
  const { stdout } = await runTool(programs.acvp, [], { input: `${input}\n` });
  return stdout.split('\n').map((line) => line === '1');
}

function flipByte(hex: string, index: number): string {
  const bytes = Buffer.from(hex, 'hex');
  bytes[index % bytes.length] = (bytes[index % bytes.length] ?? 0) ^ 0x01;
  return bytes.toString('hex');
}

describe('C ML-DSA-87 against ACVP', () => {
  it('matches every pure external sigVer case', async () => {
    const groups = await readAcvpGroups('ML-DSA-sigVer-FIPS204');
    const group = groups.find((candidate) => candidate.signatureInterface === 'external' && candidate.preHash === 'pure');
    const cases: VerifyCase[] = (group?.tests ?? []).map((test) => ({
      name: `tcId ${test.tcId}`,
      pk: String(test.pk),
      message: String(test.message),
      context: String(test.context),
      signature: String(test.signature),
      expected: test.testPassed === true,
    }));
    expect(cases).toHaveLength(15);

    const verdicts = await verifyInC(cases);

    expect(verdicts).toHaveLength(cases.length);
    cases.forEach((c, i) => expect(verdicts[i], c.name).toBe(c.expected));
  });

  it('accepts sigGen signatures and rejects altered ones', async () => {
    const groups = await readAcvpGroups('ML-DSA-sigGen-FIPS204');
    const pure = groups.filter((group) => group.signatureInterface === 'external' && group.preHash === 'pure');
    const cases: VerifyCase[] = [];
    for (const test of pure.flatMap((group) => group.tests)) {
      const pk = Buffer.from(ml_dsa87.getPublicKey(Buffer.from(String(test.sk), 'hex'))).toString('hex');
      const base = { pk, message: String(test.message), context: String(test.context), signature: String(test.signature) };
      cases.push({ ...base, name: `tcId ${test.tcId} as published`, expected: true });
      cases.push({ ...base, name: `tcId ${test.tcId} signature changed`, signature: flipByte(base.signature, Number(test.tcId) * 97), expected: false });
      const otherContext = base.context === '' ? '00' : flipByte(base.context, 0);
      cases.push({ ...base, name: `tcId ${test.tcId} context changed`, context: otherContext, expected: false });
      if (base.message !== '') cases.push({ ...base, name: `tcId ${test.tcId} message changed`, message: flipByte(base.message, 0), expected: false });
    }
    expect(cases.filter((c) => c.expected)).toHaveLength(30);

    const verdicts = await verifyInC(cases);

    cases.forEach((c, i) => expect(verdicts[i], c.name).toBe(c.expected));
  });
});
