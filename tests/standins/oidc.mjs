// A real OpenID Provider (the certified `oidc-provider` package) standing in for the city's single
// sign-on in tests/test_signin.py. Arguments: port, client id, client secret, redirect URI, and a
// JSON object of accounts ({login: {name, agency, roles}}). One confidential client, PKCE required,
// the authorization-code flow only. The ID token carries the agency and roles as the city's SSO
// does (the claim names GEOCLOUD_OIDC_AGENCY_CLAIM and GEOCLOUD_OIDC_ROLES_CLAIM default to).
// Sign-in is oidc-provider's development login form (any password; the login picks the account);
// consent is implied, as for a first-party client.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri, accountsJson] = process.argv.slice(2);
const accounts = JSON.parse(accountsJson);
const scope = 'openid profile geocloud';
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 }); // this run's signing key

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'geocloud'],
  claims: { openid: ['sub'], profile: ['name'], geocloud: ['agency', 'roles'] },
  conformIdTokenClaims: false, // the claims go in the ID token, not only to /userinfo
  cookies: { keys: ['geocloud-tests-only'] },
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'sso-test', use: 'sig', alg: 'RS256' }] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
  async loadExistingGrant(ctx) {
    const { Grant } = ctx.oidc.provider;
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return Grant.find(grantId);
    const grant = new Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(scope);
    grant.addOIDCClaims(['name', 'agency', 'roles']);
    await grant.save();
    return grant;
  },
});
provider.listen(Number(port), '127.0.0.1');
