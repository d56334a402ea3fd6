// A relying party's login with MyKey in Node.js, with panva's openid-client (v6).
//   npm install openid-client@6
//   ISSUER=http://127.0.0.1:8080 CLIENT_ID=rp_… CLIENT_SECRET=… REDIRECT_URI=https://shop.example.jp/callback \
//     node login.mjs
// Step 1 prints the URL to send the browser to; step 2 takes the callback URL the browser came back with.
import * as client from 'openid-client'
import * as readline from 'node:readline/promises'

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env
// openid-client 6 checks an ID token's signature only with enableNonRepudiationChecks (it otherwise relies on
// TLS to the token endpoint); with it, the signature is checked against the issuer's jwks_uri.
const execute = [client.enableNonRepudiationChecks]
if (new URL(ISSUER).hostname === '127.0.0.1') execute.push(client.allowInsecureRequests) // `make run`: plain http
const options = { execute }
// MyKey takes client_secret_basic or private_key_jwt (openid-client's default would be client_secret_post).
const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.ClientSecretBasic(CLIENT_SECRET), options)

// PKCE S256, state and nonce are all required by MyKey.
const codeVerifier = client.randomPKCECodeVerifier()
const state = client.randomState()
const nonce = client.randomNonce()
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: REDIRECT_URI,
  scope: 'openid',                      // add 'name address birthdate gender' for the four basic facts
  code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: 'S256',
  state,
  nonce,
})
console.log(`Send the browser to:\n${url.href}\n`)

const io = readline.createInterface({ input: process.stdin, output: process.stdout })
const callback = await io.question('Callback URL the browser came back with: ')
io.close()

// Checks the callback's iss (RFC 9207) and state, sends the PKCE verifier, and checks the ID token: its signature
// (enableNonRepudiationChecks, above), alg (one of discovery's id_token_signing_alg_values_supported), iss, aud,
// exp, iat, sub and nonce. It does not check at_hash or acr.
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
})
const claims = tokens.claims()
console.log(`Logged in. Pairwise subject for this website: ${claims.sub} (acr ${claims.acr}, at ${claims.auth_time})`)
