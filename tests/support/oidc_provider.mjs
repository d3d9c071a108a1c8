// A real OpenID provider for the tests (npm `oidc-provider`, a certified implementation), in
// the role ProConnect plays in production. Started by tests/support/oidc.py with:
//   OIDC_PORT            port on 127.0.0.1
//   OIDC_CLIENT          JSON: {client_id, client_secret, redirect_uris, post_logout_redirect_uris}
//   OIDC_USERS           JSON: {"<login>": {sub, email, given_name, usual_name, acr, amr}}
// Log-in is the provider's development interaction (any password; the login names a test
// user), which a test drives with an HTTP client or Chromium.
import Provider from "oidc-provider";

const port = Number(process.env.OIDC_PORT);
const client = JSON.parse(process.env.OIDC_CLIENT);
const users = JSON.parse(process.env.OIDC_USERS || "{}");
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{ ...client, grant_types: ["authorization_code"], response_types: ["code"] }],
  pkce: { required: () => true },
  // The scope's claims in the ID token too (ProConnect also serves them at userinfo).
  conformIdTokenClaims: false,
  scopes: ["openid", "email", "given_name", "usual_name"],
  claims: {
    openid: ["sub"],
    email: ["email"],
    given_name: ["given_name"],
    usual_name: ["usual_name"],
    acr: ["acr"],
    amr: ["amr"],
  },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(_ctx, id) {
    const user = users[id];
    if (!user) { return undefined; }
    return {
      accountId: id,
      async claims() { return { ...user, sub: user.sub || id }; },
    };
  },
});
provider.proxy = false;
provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
