// Write staticlet admission validators in JavaScript, built into components with ComponentizeJS.
//
// A policy is a function from the plugin's settings (the `config:` of its entry in the agent
// config, as an object) to a check of one pod: the check gets the pod's context and the pod as
// an object (canonical Kubernetes JSON) and returns `{field, message}` violations to reject the
// pod and strings to warn about it. `policy` turns it into the world's two exports:
//
//   import { containerImages, policy } from '../../plugins/sdk-js/staticlet.js';
//   export const { init, validator } = policy(() => (ctx, pod) =>
//     containerImages(pod).filter(({ image }) => image.endsWith(':latest'))
//       .map(({ field }) => ({ field, message: 'pin a version instead of :latest' })));
//
// ComponentizeJS maps the directory it runs in to the component's `/` while it loads the
// source, so run it from a directory holding both the policy and this file (the repository's
// root for the examples) and import this file by its relative path.
//
// Throw a `PluginError('config', …)` (as `stringList` does) from the policy function for
// settings it cannot work with, and a `PluginError(code, message)` from a check that cannot do
// its job. Anything else thrown is reported as a `config` error from the policy function and an
// `internal` one from a check: ComponentizeJS can only send a `{code, message}` value as the
// WIT error, and would otherwise trap the component.

import { log } from 'staticlet:plugin/host@0.2.0';

export { nodeName } from 'staticlet:plugin/host@0.2.0';
export { PluginError, containerImages, inRegistries, normalizeImage, stringList } from './images.js';

/** Logs a debugging detail through the agent, tagged with the plugin's name. */
export const logDebug = (message) => log('debug', message);
/** Logs a line through the agent, tagged with the plugin's name. */
export const logInfo = (message) => log('info', message);
/** Logs a warning through the agent, tagged with the plugin's name. */
export const logWarn = (message) => log('warn', message);
/** Logs an error through the agent, tagged with the plugin's name. */
export const logError = (message) => log('error', message);

// The WIT error for a thrown value: a PluginError (or any `{code, message}` of strings) keeps
// its code, anything else gets `code`.
function failure(e, code) {
  if (typeof e?.code === 'string' && typeof e?.message === 'string') return { code: e.code, message: e.message };
  return { code, message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
}

/** The `init` and `validator` exports of the `admission-validator` world for a policy. */
export function policy(build) {
  let check;
  return {
    init(config) {
      let built;
      try {
        built = build(JSON.parse(config || '{}'));
      } catch (e) {
        throw failure(e, 'config');
      }
      if (typeof built !== 'function') {
        throw { code: 'internal', message: `the policy function returned ${typeof built}, not the check of one pod` };
      }
      check = built;
    },
    validator: {
      validate(ctx, pod) {
        if (!check) throw { code: 'internal', message: 'validate was called before init' };
        let findings;
        try {
          findings = [...(check(ctx, JSON.parse(pod)) ?? [])];
        } catch (e) {
          throw failure(e, 'internal');
        }
        return {
          violations: findings.filter((f) => typeof f !== 'string').map(({ field, message }) => ({ field, message })),
          warnings: findings.filter((f) => typeof f === 'string'),
        };
      },
    },
  };
}
