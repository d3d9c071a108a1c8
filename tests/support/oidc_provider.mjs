// A real OpenID provider for the tests (npm `oidc-provider`, a certified implementation), in
// the role ProConnect plays in production. Started by tests/support/oidc.py with:
//   OIDC_PORT            port on 127.0.0.1
//   OIDC_CLIENT          JSON: {client_id, client_secret, redirect_uris, post_logout_redirect_uris}
//   OIDC_USERS           JSON: {"<login>": {sub, email, given_name, usual_name, acr, amr}}
//   OIDC_USERS_FILE      optional: a file holding the same JSON, read at every use (a test
//                        changes a person's e-mail at the provider by rewriting it)
//   OIDC_JWKS            optional: JSON {keys: [private JWK]} the provider signs with (a test
//                        that holds the key can re-sign a token it alters)
// Like ProConnect: the ID token carries sub, acr, amr (asked for with the `claims` parameter)
// and the nonce; the e-mail and names come from the userinfo endpoint as a signed JWT.
// Log-in is a minimal interaction of this script (any password; the login names a test user,
// whose acr and amr the session then carries); consent is granted at once. A test drives it
// with an HTTP client or Chromium.
import fs from "node:fs";
import Provider from "oidc-provider";

const port = Number(process.env.OIDC_PORT);
const client = JSON.parse(process.env.OIDC_CLIENT);
const initialUsers = JSON.parse(process.env.OIDC_USERS || "{}");
const usersFile = process.env.OIDC_USERS_FILE;
const issuer = `http://127.0.0.1:${port}`;

function users() {
  return usersFile ? JSON.parse(fs.readFileSync(usersFile, "utf8")) : initialUsers;
}

const configuration = {
  clients: [
    {
      grant_types: ["authorization_code"],
      response_types: ["code"],
      userinfo_signed_response_alg: "RS256",
      ...client,
    },
  ],
  pkce: { required: () => true },
  acrValues: ["eidas1", "eidas2", "eidas3"],
  scopes: ["openid", "email", "given_name", "usual_name", "uid"],
  claims: {
    openid: ["sub", "acr"], // ProConnect always sends acr in the ID token
    email: ["email"],
    given_name: ["given_name"],
    usual_name: ["usual_name"],
    uid: ["uid"],
    acr: null,
    amr: null,
  },
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
    jwtUserinfo: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // The provider's confirmation page, in French and accessible (the journeys run axe-core
      // on every page they load).
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><html lang="fr"><head><title>Déconnexion</title><link rel="icon" href="data:,"></head>
<body><main><h1>Se déconnecter du fournisseur d'identité de test ?</h1>${form}
<input type="hidden" form="op.logoutForm" name="logout" value="yes">
<button type="submit" form="op.logoutForm" id="idp-logout">Se déconnecter</button></main></body></html>`;
      },
    },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const user = users()[id];
    if (!user) { return undefined; }
    return {
      accountId: id,
      async claims() {
        const { acr: _acr, amr: _amr, ...claims } = user;
        return { ...claims, sub: user.sub || id };
      },
    };
  },
};
if (process.env.OIDC_JWKS) { configuration.jwks = JSON.parse(process.env.OIDC_JWKS); }

const provider = new Provider(issuer, configuration);
provider.proxy = false;

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) { chunks.push(chunk); }
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

// The interactions: a log-in form, then consent granted without asking.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
  if (!match) { return next(); }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === "login") {
    if (ctx.method !== "POST" || !match[2]) {
      ctx.type = "html";
      ctx.body = `<!doctype html><html lang="fr"><head><title>Fournisseur d'identité de test</title><link rel="icon" href="data:,"></head>
<body><main><h1>Fournisseur d'identité de test</h1>
<form method="post" action="/interaction/${escape(match[1])}/login">
<label for="login">Identifiant</label><input id="login" name="login" value="">
<label for="password">Mot de passe</label><input id="password" type="password" name="password" value="">
<button type="submit" id="idp-submit">Se connecter</button></form></main></body></html>`;
      return undefined;
    }
    const form = await readForm(ctx.req);
    const login = form.get("login") || "";
    const user = users()[login];
    if (!user) {
      result = { error: "access_denied", error_description: "unknown test user" };
    } else {
      result = { login: { accountId: login, acr: user.acr, amr: user.amr } };
    }
  } else if (prompt.name === "consent") {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) { grant.addOIDCScope(missing.missingOIDCScope.join(" ")); }
    if (missing.missingOIDCClaims) { grant.addOIDCClaims(missing.missingOIDCClaims); }
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(" "));
      }
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    result = { error: "access_denied" };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: false,
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
  return undefined;
});

provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
