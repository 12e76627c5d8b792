/**
 * The pure pieces of the gRPC path (proxy/grpc.ts): recognising a call,
 * reading its deadline, judging its outcome, encoding a message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeGrpcMessage, grpcOutcome, grpcStatusOfHttp, grpcTimeoutMs, isGrpc } from '../proxy/grpc.js';

test('isGrpc: application/grpc and its +proto/+json forms, not grpc-web or look-alikes', () => {
  for (const t of ['application/grpc', 'application/grpc+proto', 'application/grpc+json', 'application/grpc;charset=utf-8']) assert.equal(isGrpc(t), true, t);
  for (const t of [undefined, '', 'application/grpc-web', 'application/grpc-web+proto', 'application/grpcx', 'application/json', 'text/grpc']) assert.equal(isGrpc(t), false, String(t));
});

test('grpcTimeoutMs: every unit; malformed, too long or beyond a timer\'s range is no deadline', () => {
  assert.deepEqual(['2H', '3M', '4S', '100m', '5000u', '7000000n'].map(grpcTimeoutMs), [7_200_000, 180_000, 4_000, 100, 5, 7]);
  assert.equal(grpcTimeoutMs('0m'), 0);
  for (const bad of [undefined, '', 'm', '10', '10x', '-5m', '1.5S', '123456789m', ['100m']]) assert.equal(grpcTimeoutMs(bad as string), -1, String(bad));
  // 99,999,999 hours overflows setTimeout (which would fire at once): no deadline rather than an instant one.
  assert.equal(grpcTimeoutMs('99999999H'), -1);
  assert.equal(grpcTimeoutMs('596H'), 596 * 3_600_000);
});

test('grpcOutcome: trailers first, then a trailers-only answer\'s headers; a missing status is INTERNAL, a non-200 maps by HTTP status', () => {
  assert.equal(grpcOutcome(200, { 'grpc-status': '0' }, { 'grpc-status': '14' }), 14);
  assert.equal(grpcOutcome(200, { 'grpc-status': '5' }, null), 5);
  assert.equal(grpcOutcome(200, {}, {}), 13);
  assert.equal(grpcOutcome(503, {}, null), 14);
  assert.equal(grpcOutcome(200, {}, { 'grpc-status': 'nope' }), 2);
  assert.equal(grpcOutcome(200, {}, { 'grpc-status': '99' }), 2);
  assert.deepEqual([400, 401, 403, 404, 429, 502, 503, 504, 500].map(grpcStatusOfHttp), [13, 16, 7, 12, 14, 14, 14, 14, 2]);
});

test('encodeGrpcMessage: printable ASCII kept, anything else and % percent-encoded', () => {
  assert.equal(encodeGrpcMessage('version v1 failed'), 'version v1 failed');
  assert.equal(encodeGrpcMessage('100% down'), '100%25%20down');
  assert.equal(encodeGrpcMessage('naïve\nline'), 'na%C3%AFve%0Aline');
});
