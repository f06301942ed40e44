// The desktop guest's module selection: modules.dep parsing and load order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layerModules } from '../../examples/qemu/desktop-image.js';
import { orderModules, parseModulesDep } from '../../examples/qemu/guest-image.js';

const modulesDep = [
  'kernel/drivers/gpu/drm/virtio/virtio-gpu.ko: kernel/drivers/gpu/drm/drm_kms_helper.ko kernel/drivers/gpu/drm/drm.ko',
  'kernel/drivers/gpu/drm/drm_kms_helper.ko.xz: kernel/drivers/gpu/drm/drm.ko',
  'kernel/drivers/gpu/drm/drm.ko:',
  'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko',
  'kernel/net/9p/9pnet.ko:',
  'kernel/fs/netfs/netfs.ko:',
  '',
].join('\n');

test('modules.dep: names normalized (- to _), compressed names, dependencies by name', () => {
  const modules = parseModulesDep(modulesDep);
  assert.deepEqual(modules.get('virtio_gpu'), {
    file: 'kernel/drivers/gpu/drm/virtio/virtio-gpu.ko',
    deps: ['drm_kms_helper', 'drm'],
  });
  assert.deepEqual(modules.get('drm_kms_helper'), {
    file: 'kernel/drivers/gpu/drm/drm_kms_helper.ko.xz',
    deps: ['drm'],
  });
  assert.deepEqual(modules.get('drm')?.deps, []);
  assert.equal(modules.size, 6);
});

test('load order puts every module after its dependencies', () => {
  const modules = parseModulesDep(modulesDep);
  const order = orderModules(
    ['9p', 'virtio-gpu'],
    (name) => modules.get(name.replace(/-/g, '_'))?.deps ?? [],
  );
  assert.deepEqual(order, ['9pnet', 'netfs', '9p', 'drm', 'drm_kms_helper', 'virtio-gpu']);
});

test('the layer holds what the desktop needs: GPU, input, evdev, 9p, overlay', () => {
  for (const name of ['virtio-gpu', 'virtio_input', 'evdev', '9p', '9pnet_virtio', 'overlay'])
    assert.ok(layerModules.includes(name), name);
});
