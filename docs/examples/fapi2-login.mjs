// A FAPI 2.0 relying party's login with MyKey in Node.js, with panva's openid-client (v6): the authorization
// request pushed (PAR), the client authenticated with private_key_jwt (ES256 or PS256), every token bound to a
// DPoP key, userinfo read with a DPoP proof.
//   npm install openid-client@6
//   ISSUER=http://127.0.0.1:8080 CLIENT_ID=rp_… CLIENT_KEY_FILE=client-private.jwk.json \
//     REDIRECT_URI=https://bank.example.jp/callback node fapi2-login.mjs
// CLIENT_KEY_FILE holds the client's private key as one JWK (EC P-256 or RSA, with its "kid"); its public half
// is what was registered with `python -m idp clients add --profile fapi2 --jwks …`.
// Step 1 prints the URL to send the browser to; step 2 takes the callback URL the browser came back with.
import * as client from 'openid-client'
import { readFile } from 'node:fs/promises'
import * as readline from 'node:readline/promises'

const { ISSUER, CLIENT_ID, CLIENT_KEY_FILE, REDIRECT_URI } = process.env
const execute = [client.enableNonRepudiationChecks]
if (new URL(ISSUER).hostname === '127.0.0.1') execute.push(client.allowInsecureRequests) // `make run`: plain http

// The client's signing key for private_key_jwt: ES256 for an EC P-256 key, PS256 for RSA (MyKey refuses RS256
// from a FAPI 2.0 client).
const { kid, alg, ...jwk } = JSON.parse(await readFile(CLIENT_KEY_FILE, 'utf8'))
const algorithm = jwk.kty === 'EC' ? { name: 'ECDSA', namedCurve: 'P-256' } : { name: 'RSA-PSS', hash: 'SHA-256' }
const key = await crypto.subtle.importKey('jwk', jwk, algorithm, false, ['sign'])
const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.PrivateKeyJwt({ key, kid }),
  { execute })

// A DPoP key for this login: the code, the access token and the refresh token are all bound to it. openid-client
// answers the token endpoint's use_dpop_nonce by signing again with the nonce it was given.
const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'))

// PKCE S256, state and nonce are required; the parameters go to the PAR endpoint, the browser gets only
// client_id and request_uri.
const codeVerifier = client.randomPKCECodeVerifier()
const state = client.randomState()
const nonce = client.randomNonce()
const url = await client.buildAuthorizationUrlWithPAR(config, {
  redirect_uri: REDIRECT_URI,
  scope: 'openid',
  code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: 'S256',
  state,
  nonce,
}, { DPoP })
console.log(`Send the browser to:\n${url.href}\n`)

const io = readline.createInterface({ input: process.stdin, output: process.stdout })
const callback = await io.question('Callback URL the browser came back with: ')
io.close()

// Checks the callback's iss (RFC 9207) and state, sends the PKCE verifier with a DPoP proof, and checks the ID
// token (signature, alg, iss, aud, exp, iat, sub, nonce) and that the tokens are DPoP-bound (token_type DPoP).
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
}, undefined, { DPoP })
const claims = tokens.claims()
console.log(`Logged in. Pairwise subject for this website: ${claims.sub} (acr ${claims.acr}, token_type ${tokens.token_type})`)

// userinfo with the bound access token: Authorization: DPoP and a proof carrying the token's hash (ath).
const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub, { DPoP })
console.log(`userinfo sub ${info.sub}`)

// A refresh, also with a proof by the same key. MyKey does not rotate a FAPI 2.0 client's refresh token: the
// same one stays good until it expires, so a lost answer can simply be asked for again.
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP })
console.log(`Refreshed: token_type ${refreshed.token_type}, new refresh token ${refreshed.refresh_token ? 'yes' : 'no'}`)
