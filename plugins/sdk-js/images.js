// The parts of the SDK that need no component: errors, settings and image helpers. They import
// nothing from the host, so that plain Node can test them (`images.test.js`).

/** A failure to do the job (not a verdict), reported to the agent with its `code`. */
export class PluginError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// Every kind of container a pod has, in the order the agent reports them.
const CONTAINER_KINDS = ['initContainers', 'containers', 'ephemeralContainers'];

/** The setting `key`: a non-empty list of non-empty strings, or a `config` error naming it. */
export function stringList(settings, key) {
  const value = settings?.[key];
  if (!Array.isArray(value) || !value.length || !value.every((v) => typeof v === 'string' && v)) {
    throw new PluginError('config', `settings need \`${key}\`: a non-empty list of strings`);
  }
  return value;
}

/**
 * Every container's image (init, app and ephemeral containers) with its field path:
 * `[{field: 'spec.containers[1].image', image: 'busybox'}, …]`; an absent image is `''`.
 */
export function containerImages(pod) {
  const spec = pod?.spec ?? {};
  return CONTAINER_KINDS.flatMap((kind) =>
    (spec[kind] ?? []).map((container, i) => ({ field: `spec.${kind}[${i}].image`, image: container.image ?? '' })),
  );
}

/**
 * The image with its registry host made explicit, as a container runtime reads it: a first path
 * segment with a `.` or a `:`, or `localhost`, is a registry host, and an image without one is
 * Docker Hub's (`busybox` is `docker.io/busybox`).
 */
export function normalizeImage(image) {
  const [host, ...rest] = image.split('/');
  return rest.length && (/[.:]/.test(host) || host === 'localhost') ? image : `docker.io/${image}`;
}

/**
 * Whether the image comes from one of `registries`, each a registry host with an optional path
 * (`registry.internal:5000`, `ghcr.io/acme`; a trailing `/` is ignored). `docker.io` covers
 * images without a registry host.
 */
export function inRegistries(image, registries) {
  const normalized = normalizeImage(image);
  return registries.some((r) => normalized.startsWith(`${r.replace(/\/+$/, '')}/`));
}
