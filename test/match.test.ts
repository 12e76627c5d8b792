import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getCookie, getQueryParam } from '../proxy/match.js';

test('getCookie finds a cookie by exact name among others', () => {
  assert.equal(getCookie('a=1; beta=2; b=3', 'beta'), '2');
  assert.equal(getCookie('betax=1; beta=2', 'beta'), '2');
  assert.equal(getCookie('xbeta=1', 'beta'), undefined);
  assert.equal(getCookie('sid="quoted"', 'sid'), 'quoted');
  assert.equal(getCookie('sid=', 'sid'), '');
  assert.equal(getCookie(';;  sid=7;', 'sid'), '7');
  assert.equal(getCookie(undefined, 'sid'), undefined);
  assert.equal(getCookie('noequals; sid=1', 'sid'), '1');
});

test('getQueryParam decodes and finds the first value', () => {
  assert.equal(getQueryParam('/p?version=v2', 'version'), 'v2');
  assert.equal(getQueryParam('/p?a=1&version=v%32&version=v3', 'version'), 'v2');
  assert.equal(getQueryParam('/p?flag&x=1', 'flag'), '');
  assert.equal(getQueryParam('/p?q=a+b', 'q'), 'a b');
  assert.equal(getQueryParam('/p?q=%E0%A4%A', 'q'), '%E0%A4%A');
  assert.equal(getQueryParam('/p', 'q'), undefined);
  assert.equal(getQueryParam('/p?qq=1', 'q'), undefined);
});
