import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  KLEV_SIGNATURE_HEADER,
  klevSignatureHeader,
  newSecret,
  standardWebhookHeaders,
  standardWebhookKey,
  verifyKlev,
  verifyStandard,
} from '../../../src/egress/signature.js';

// klev-facts §3.3
const KLEV_SECRET = 'ewhsec_4WWS5n4YcVrX8FhtxTKG3ctFHud3amGsr';
const KLEV_T = 1695490927;
const KLEV_BODY = '{"encoding":"base64","offset":0,"time":1695490927247960,"value":"aGVsbG8gd29ybGQ="}';
const KLEV_V1 = '3671db6a4dc7e7e65aefe0d5daca2b088d4e2bcdd03dec65ebb867c7fca27879';
const KLEV_HEADER = `t=${KLEV_T};v1=${KLEV_V1}`;

// klev-facts §6
const SW_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SW_ID = 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W';
const SW_T = 1674087231;
const SW_BODY = '{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}';
const SW_SIG = 'v1,ARw42xaAApl/nxRo+iPGYwSaMQaOwMo2eyH5JBRA+bQ=';

const at = (nowSeconds: number) => ({ nowSeconds });
const code = (r: ReturnType<typeof verifyKlev>) => (r.ok ? 'ok' : r.code);

describe('newSecret', () => {
  it('is ewhsec_ + 33 alphanumerics', () => {
    for (let i = 0; i < 500; i++) expect(newSecret()).toMatch(/^ewhsec_[0-9A-Za-z]{33}$/);
  });

  it('is unique', () => {
    const s = new Set(Array.from({ length: 2000 }, () => newSecret()));
    expect(s.size).toBe(2000);
  });

  it('uses the whole alphabet', () => {
    const seen = new Set(Array.from({ length: 300 }, () => newSecret().slice(7)).join(''));
    expect(seen.size).toBe(62);
  });
});

describe('klev signatures', () => {
  it('reproduces the klev-facts test vector', () => {
    expect(KLEV_SIGNATURE_HEADER).toBe('x-klev-signature');
    expect(klevSignatureHeader([KLEV_SECRET], KLEV_T, KLEV_BODY)).toBe(KLEV_HEADER);
    expect(klevSignatureHeader([KLEV_SECRET], KLEV_T, Buffer.from(KLEV_BODY))).toBe(KLEV_HEADER);
  });

  it('keys the HMAC with the whole secret string, prefix included', () => {
    const mac = crypto.createHmac('sha256', KLEV_SECRET).update(`${KLEV_T}.${KLEV_BODY}`).digest('hex');
    expect(mac).toBe(KLEV_V1);
  });

  it('verifies the vector, in either hex case, with the body as text or bytes', () => {
    expect(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, at(KLEV_T + 10))).toEqual({ ok: true });
    expect(verifyKlev(KLEV_SECRET, `t=${KLEV_T};v1=${KLEV_V1.toUpperCase()}`, Buffer.from(KLEV_BODY), at(KLEV_T))).toEqual({ ok: true });
  });

  it('checks the content type exactly when the payload kind is given', () => {
    const opts = (contentType: string | undefined, payload: 'message' | 'key' | 'value') => ({ nowSeconds: KLEV_T, contentType, payload });
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, opts('application/json', 'message')))).toBe('ok');
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, opts('application/json; charset=utf-8', 'message')))).toBe('klev-content-type-json-invalid');
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, opts(undefined, 'message')))).toBe('klev-content-type-json-invalid');
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, opts('application/json', 'value')))).toBe('klev-content-type-octet-invalid');
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, opts('text/plain', 'key')))).toBe('klev-content-type-octet-invalid');
    const raw = Buffer.from([0, 1, 2, 255]);
    expect(code(verifyKlev(KLEV_SECRET, klevSignatureHeader([KLEV_SECRET], KLEV_T, raw), raw, opts('application/octet-stream', 'key')))).toBe('ok');
    // the content type is checked before anything else
    expect(code(verifyKlev(KLEV_SECRET, undefined, KLEV_BODY, opts('text/plain', 'message')))).toBe('klev-content-type-json-invalid');
  });

  it('reports every failure with its klev code', () => {
    const v = (header: string | undefined, nowSeconds = KLEV_T, body: string = KLEV_BODY) => code(verifyKlev(KLEV_SECRET, header, body, { nowSeconds }));
    expect(v(undefined)).toBe('klev-not-signed');
    expect(v('')).toBe('klev-not-signed');
    expect(v(`t=abc;v1=${KLEV_V1}`)).toBe('klev-timestamp-invalid');
    expect(v(`t=;v1=${KLEV_V1}`)).toBe('klev-timestamp-invalid');
    expect(v(`t=1.5;v1=${KLEV_V1}`)).toBe('klev-timestamp-invalid');
    expect(v(`t=99999999999999999999;v1=${KLEV_V1}`)).toBe('klev-timestamp-invalid');
    expect(v(KLEV_HEADER, KLEV_T + 301)).toBe('klev-timestamp-expired');
    expect(v(KLEV_HEADER, KLEV_T + 300)).toBe('ok');
    expect(v(KLEV_HEADER, KLEV_T - 301)).toBe('klev-timestamp-future');
    expect(v(KLEV_HEADER, KLEV_T - 300)).toBe('ok');
    expect(v(`v1=${KLEV_V1}`)).toBe('klev-signature-time-missing');
    expect(v(`t=${KLEV_T}`)).toBe('klev-signature-missing');
    expect(v(`t=${KLEV_T};v1=nothex`)).toBe('klev-signature-missing'); // undecodable v1 is skipped
    expect(v(`t=${KLEV_T};v1=abc`)).toBe('klev-signature-missing'); // odd length
    expect(v(`t=${KLEV_T};v1=nothex;v1=${KLEV_V1}`)).toBe('ok');
    expect(v(`t=${KLEV_T};v1=${'00'.repeat(32)}`)).toBe('klev-signature-mismatch');
    expect(v(`t=${KLEV_T};v1=${KLEV_V1.slice(2)}`)).toBe('klev-signature-mismatch'); // wrong length
    expect(v(KLEV_HEADER, KLEV_T, KLEV_BODY.replace('0,', '1,'))).toBe('klev-signature-mismatch'); // tampered body
    expect(code(verifyKlev(newSecret(), KLEV_HEADER, KLEV_BODY, at(KLEV_T)))).toBe('klev-signature-mismatch'); // wrong secret
  });

  it('parses the header as klev does', () => {
    const v = (header: string) => code(verifyKlev(KLEV_SECRET, header, KLEV_BODY, at(KLEV_T)));
    expect(v(`v1=${KLEV_V1};t=${KLEV_T}`)).toBe('ok'); // any order
    expect(v(`x=1;junk;t=${KLEV_T};v2=ff;v1=${KLEV_V1}`)).toBe('ok'); // unknown keys and parts without '=' skipped
    expect(v(`t=${KLEV_T}; v1=${KLEV_V1}`)).toBe('klev-signature-missing'); // keys are not trimmed
    expect(v(`t=${KLEV_T - 1};t=${KLEV_T};v1=${KLEV_V1}`)).toBe('ok'); // the last t wins
    expect(v(`t=${KLEV_T};t=${KLEV_T - 1};v1=${KLEV_V1}`)).toBe('klev-signature-mismatch');
    expect(v(`t=${KLEV_T - 3600};t=${KLEV_T};v1=${KLEV_V1}`)).toBe('klev-timestamp-expired'); // every t is checked
    expect(v(`t=+${KLEV_T};v1=${KLEV_V1}`)).toBe('klev-signature-mismatch'); // t is signed as received
  });

  it('honours a custom tolerance', () => {
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, { nowSeconds: KLEV_T + 61, toleranceSeconds: 60 }))).toBe('klev-timestamp-expired');
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY, { nowSeconds: KLEV_T + 3000, toleranceSeconds: 3600 }))).toBe('ok');
  });

  it('uses the clock by default', () => {
    const t = Math.floor(Date.now() / 1000);
    expect(verifyKlev(KLEV_SECRET, klevSignatureHeader([KLEV_SECRET], t, 'x'), 'x')).toEqual({ ok: true });
    expect(code(verifyKlev(KLEV_SECRET, KLEV_HEADER, KLEV_BODY))).toBe('klev-timestamp-expired');
  });

  it('rotation: one v1 per secret, and either secret verifies', () => {
    const old = newSecret();
    const current = newSecret();
    const header = klevSignatureHeader([current, old], KLEV_T, KLEV_BODY);
    expect(header).toMatch(/^t=1695490927;v1=[0-9a-f]{64};v1=[0-9a-f]{64}$/);
    expect(verifyKlev(current, header, KLEV_BODY, at(KLEV_T))).toEqual({ ok: true });
    expect(verifyKlev(old, header, KLEV_BODY, at(KLEV_T))).toEqual({ ok: true });
    expect(code(verifyKlev(newSecret(), header, KLEV_BODY, at(KLEV_T)))).toBe('klev-signature-mismatch');
  });

  it('refuses to sign with a non-integer time or no secret', () => {
    expect(() => klevSignatureHeader([KLEV_SECRET], 1.5, 'x')).toThrow(TypeError);
    expect(() => klevSignatureHeader([], 1, 'x')).toThrow(TypeError);
  });
});

describe('Standard Webhooks signatures', () => {
  it('reproduces the klev-facts test vector', () => {
    expect(standardWebhookHeaders(SW_ID, [SW_SECRET], SW_T, SW_BODY)).toEqual({
      'webhook-id': SW_ID,
      'webhook-timestamp': String(SW_T),
      'webhook-signature': SW_SIG,
    });
  });

  it('keys whsec_ secrets with the base64-decoded suffix, others with their raw bytes', () => {
    expect(standardWebhookKey(SW_SECRET)).toEqual(Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'));
    expect(standardWebhookKey(SW_SECRET)).toHaveLength(24);
    expect(standardWebhookKey(KLEV_SECRET)).toEqual(Buffer.from(KLEV_SECRET, 'utf8'));
    const h = standardWebhookHeaders('ewh_x_0', [KLEV_SECRET], KLEV_T, KLEV_BODY);
    const expected = crypto.createHmac('sha256', KLEV_SECRET).update(`ewh_x_0.${KLEV_T}.${KLEV_BODY}`).digest('base64');
    expect(h['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('verifies the vector, with header names in any case', () => {
    const headers = standardWebhookHeaders(SW_ID, [SW_SECRET], SW_T, SW_BODY);
    expect(verifyStandard(SW_SECRET, { ...headers }, SW_BODY, at(SW_T))).toEqual({ ok: true });
    expect(verifyStandard(SW_SECRET, { 'Webhook-Id': SW_ID, 'Webhook-Timestamp': String(SW_T), 'Webhook-Signature': SW_SIG }, Buffer.from(SW_BODY), at(SW_T))).toEqual({ ok: true });
  });

  it('reports every failure with its code', () => {
    const base = { 'webhook-id': SW_ID, 'webhook-timestamp': String(SW_T), 'webhook-signature': SW_SIG };
    const v = (headers: Record<string, string | undefined>, nowSeconds = SW_T, body = SW_BODY, secret = SW_SECRET) =>
      code(verifyStandard(secret, { ...base, ...headers }, body, { nowSeconds }));
    expect(v({})).toBe('ok');
    expect(v({ 'webhook-id': undefined })).toBe('webhook-headers-missing');
    expect(v({ 'webhook-timestamp': '' })).toBe('webhook-headers-missing');
    expect(v({ 'webhook-signature': undefined })).toBe('webhook-headers-missing');
    expect(v({ 'webhook-timestamp': 'soon' })).toBe('webhook-timestamp-invalid');
    expect(v({ 'webhook-timestamp': '-5' })).toBe('webhook-timestamp-invalid');
    expect(v({}, SW_T + 301)).toBe('webhook-timestamp-expired');
    expect(v({}, SW_T + 300)).toBe('ok');
    expect(v({}, SW_T - 301)).toBe('webhook-timestamp-future');
    expect(v({}, SW_T - 300)).toBe('ok');
    expect(v({ 'webhook-signature': 'v1a,abc v2,def' })).toBe('webhook-signature-missing');
    expect(v({ 'webhook-signature': 'garbage' })).toBe('webhook-signature-missing');
    expect(v({ 'webhook-signature': `v1a,abc ${SW_SIG} v2,def` })).toBe('ok'); // unknown versions ignored
    expect(v({ 'webhook-signature': 'v1,AAAA' })).toBe('webhook-signature-mismatch');
    expect(v({ 'webhook-signature': `v1,${'A'.repeat(43)}=` })).toBe('webhook-signature-mismatch');
    expect(v({ 'webhook-signature': `${SW_SIG}!` })).toBe('webhook-signature-mismatch'); // no lenient base64
    expect(v({ 'webhook-id': 'msg_other' })).toBe('webhook-signature-mismatch'); // the id is signed
    expect(v({}, SW_T, SW_BODY.replace('contact', 'kontact'))).toBe('webhook-signature-mismatch'); // tampered body
    expect(v({}, SW_T, SW_BODY, 'whsec_' + crypto.randomBytes(24).toString('base64'))).toBe('webhook-signature-mismatch'); // wrong secret
  });

  it('rotation: one entry per secret, space-separated, and either secret verifies', () => {
    const old = newSecret();
    const current = newSecret();
    const h = standardWebhookHeaders('ewh_a_1', [current, old], SW_T, SW_BODY);
    expect(h['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}= v1,[A-Za-z0-9+/]{43}=$/);
    expect(verifyStandard(current, { ...h }, SW_BODY, at(SW_T))).toEqual({ ok: true });
    expect(verifyStandard(old, { ...h }, SW_BODY, at(SW_T))).toEqual({ ok: true });
    expect(code(verifyStandard(newSecret(), { ...h }, SW_BODY, at(SW_T)))).toBe('webhook-signature-mismatch');
  });

  it('refuses ids the spec forbids', () => {
    expect(() => standardWebhookHeaders('a.b', [SW_SECRET], SW_T, SW_BODY)).toThrow(TypeError);
    expect(() => standardWebhookHeaders('', [SW_SECRET], SW_T, SW_BODY)).toThrow(TypeError);
    expect(() => standardWebhookHeaders('x', [SW_SECRET], 1.5, SW_BODY)).toThrow(TypeError);
  });
});
