// Allowed registries, in JavaScript: every container image must come from a registry the
// settings list (`registries: [registry.internal:5000, ghcr.io/acme]`). See ../README.md.
import { containerImages, inRegistries, logInfo, policy, stringList } from '../../../../plugins/sdk-js/staticlet.js';

export const { init, validator } = policy((settings) => {
  const registries = stringList(settings, 'registries').map((r) => r.replace(/\/+$/, ''));
  logInfo(`allowing images from ${registries.join(', ')}`);
  return (ctx, pod) =>
    containerImages(pod)
      .filter(({ image }) => !inRegistries(image, registries))
      .map(({ field, image }) => ({ field, message: `image ${image} is not from an allowed registry (${registries.join(', ')})` }));
});
