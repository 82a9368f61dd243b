package matrix

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// MasterKey fetches user's cross-signing keys from the homeserver and
// returns the master key the bot trusts for them — the one it saw first —
// and the one the homeserver serves now. They differ after the user reset
// their cross-signing (or if the homeserver swapped the key): until an
// operator accepts the new one, the bot reads none of the user's sessions
// (inbound.go, decrypted).
func (c *Channel) MasterKey(ctx context.Context, user id.UserID) (first, current id.Ed25519, err error) {
	if _, err := c.mach.FetchKeys(ctx, []id.UserID{user}, true); err != nil {
		return "", "", fmt.Errorf("matrix: fetching %s's keys from the homeserver: %w", user, err)
	}
	keys, err := c.mach.CryptoStore.GetCrossSigningKeys(ctx, user)
	if err != nil {
		return "", "", fmt.Errorf("matrix: reading %s's cross-signing keys: %w", user, err)
	}
	msk, ok := keys[id.XSUsageMaster]
	if !ok {
		return "", "", fmt.Errorf("matrix: %s has no cross-signing keys; there is nothing to trust (their devices' own keys are checked)", user)
	}
	return msk.First, msk.Key, nil
}

// TrustMasterKey makes key, user's current master key (see MasterKey), the
// one the bot trusts for them from now on. Call it only for a key an
// operator compared with the user's own client; the caller audits it.
func (c *Channel) TrustMasterKey(ctx context.Context, user id.UserID, key id.Ed25519) error {
	if err := c.mach.CryptoStore.ResetMasterKeyTOFU(ctx, user, key); err != nil {
		return fmt.Errorf("matrix: trusting %s's master key: %w", user, err)
	}
	return nil
}
