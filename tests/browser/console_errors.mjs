// Which browser console errors fail a test: those that come from this pack (its extension's
// script, requests to its routes and files, anything naming it) and only those. The front end's own
// noise differs between its versions (offline registry look-ups, CSP, settings) and is kept, with
// its reason, in the result's ignoredErrors.
const OURS = /radial[-_ ]?attention|radial_readout/i;

// null when the error is ours (the test fails), else why it is not
export function notOurs(e, host) {
  // the front end looks our nodes up in the online registry: blocked offline, not our code
  if (/https?:\/\/(?!127\.0\.0\.1|localhost)/.test(e.text || "") || (e.url && !e.url.includes(host))) {
    return "external request blocked (offline)";
  }
  return OURS.test(`${e.url || ""}\n${e.text || ""}`) ? null : "not from the Radial Attention pack";
}
