// Unit tests of the helpers that need no component: `node --test plugins/sdk-js/images.test.js`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PluginError, containerImages, inRegistries, normalizeImage, stringList } from './images.js';

test('every kind of container is listed with its field path', () => {
  const pod = {
    spec: {
      initContainers: [{ image: 'init:1' }],
      containers: [{ image: 'a' }, {}],
      ephemeralContainers: [{ image: 'debug' }],
    },
  };
  assert.deepEqual(containerImages(pod), [
    { field: 'spec.initContainers[0].image', image: 'init:1' },
    { field: 'spec.containers[0].image', image: 'a' },
    { field: 'spec.containers[1].image', image: '' },
    { field: 'spec.ephemeralContainers[0].image', image: 'debug' },
  ]);
  assert.deepEqual(containerImages({}), []);
});

test('an image without a registry host is Docker Hub’s', () => {
  assert.equal(normalizeImage('busybox'), 'docker.io/busybox');
  assert.equal(normalizeImage('library/nginx:1'), 'docker.io/library/nginx:1');
  assert.equal(normalizeImage('registry.internal:5000/app:1'), 'registry.internal:5000/app:1');
  assert.equal(normalizeImage('reg:5000/app'), 'reg:5000/app');
  assert.equal(normalizeImage('localhost/app'), 'localhost/app');
  assert.equal(normalizeImage('ghcr.io/acme/app'), 'ghcr.io/acme/app');
});

test('registries match whole path segments, with or without a trailing slash', () => {
  assert.ok(inRegistries('busybox', ['docker.io']));
  assert.ok(inRegistries('ghcr.io/acme/app:1', ['quay.io', 'ghcr.io/acme/']));
  assert.ok(!inRegistries('ghcr.io/acmeco/app:1', ['ghcr.io/acme']));
  assert.ok(!inRegistries('docker.io.evil.example/app', ['docker.io']));
  assert.ok(!inRegistries('busybox', ['registry.internal:5000']));
});

test('a string list setting must be a non-empty list of non-empty strings', () => {
  assert.deepEqual(stringList({ registries: ['a', 'b'] }, 'registries'), ['a', 'b']);
  for (const settings of [{}, { registries: [] }, { registries: 'a' }, { registries: ['a', 7] }, { registries: [''] }]) {
    assert.throws(
      () => stringList(settings, 'registries'),
      (e) => e instanceof PluginError && e.code === 'config' && e.message.includes('`registries`'),
    );
  }
});
