// In-memory user directory of the dev identity provider. Everything here is
// lost on restart, on purpose: this is a test fixture, not an account store.

import { createHash, timingSafeEqual } from 'node:crypto';

// Keycloak gives users UUID subjects; so do we, derived from the username so
// that `sub` stays the same across restarts of the dev IdP.
function subjectFor(username) {
  const h = createHash('sha256').update(`gatehouse-dev-idp:${username}`).digest('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function digest(value) {
  return createHash('sha256').update(String(value)).digest();
}

export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{1,31}$/;

export class UserDirectory {
  #byUsername = new Map();
  #bySub = new Map();
  #avatarUrl;

  constructor({ avatarUrl }) {
    this.#avatarUrl = avatarUrl;
  }

  add({
    username, password, name, givenName, familyName, email, emailVerified, roles, locale = 'en',
  }) {
    const key = username.toLowerCase();
    if (this.#byUsername.has(key)) {
      throw new Error(`user ${key} already exists`);
    }
    const [first, ...rest] = name.trim().split(/\s+/);
    const user = {
      sub: subjectFor(key),
      username: key,
      passwordDigest: digest(password),
      name: name.trim(),
      givenName: givenName ?? first,
      familyName: familyName ?? (rest.join(' ') || undefined),
      email,
      emailVerified: Boolean(emailVerified),
      roles: [...roles],
      locale,
      updatedAt: Math.floor(Date.now() / 1000),
      picture: this.#avatarUrl(key),
    };
    this.#byUsername.set(key, user);
    this.#bySub.set(user.sub, user);
    return user;
  }

  has(username) {
    return this.#byUsername.has(String(username).toLowerCase());
  }

  byUsername(username) {
    return this.#byUsername.get(String(username).toLowerCase());
  }

  bySub(sub) {
    return this.#bySub.get(sub);
  }

  // Returns the user when the password matches, undefined otherwise.
  authenticate(username, password) {
    const user = this.byUsername(username ?? '');
    const given = digest(password ?? '');
    // Compare even for unknown users so both paths cost the same.
    const expected = user?.passwordDigest ?? digest('\0no-such-user');
    const ok = timingSafeEqual(given, expected);
    return ok && user ? user : undefined;
  }

  list() {
    return [...this.#byUsername.values()];
  }
}

// Claims of one user. The ID token and the userinfo response share these;
// userinfo also carries `updated_at` and `locale`, so a UI can show that
// userinfo is fetched fresh and is not a copy of the ID token.
export function claimsFor(user, use) {
  const claims = {
    sub: user.sub,
    name: user.name,
    given_name: user.givenName,
    family_name: user.familyName,
    preferred_username: user.username,
    picture: user.picture,
    email: user.email,
    email_verified: user.emailVerified,
    realm_access: { roles: [...user.roles] },
  };
  if (use === 'userinfo') {
    claims.updated_at = user.updatedAt;
    claims.locale = user.locale;
  }
  return claims;
}

export function seedUsers(directory) {
  directory.add({
    username: 'alice',
    password: 'alice',
    name: 'Alice Liddell',
    givenName: 'Alice',
    familyName: 'Liddell',
    email: 'alice@example.com',
    emailVerified: true,
    roles: ['admin', 'user'],
    locale: 'en-GB',
  });
  directory.add({
    username: 'bob',
    password: 'bob',
    name: 'Bob Builder',
    givenName: 'Bob',
    familyName: 'Builder',
    email: 'bob@example.com',
    emailVerified: false,
    roles: ['user'],
    locale: 'en',
  });
}
