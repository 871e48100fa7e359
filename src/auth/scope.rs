//! Which providers' rows a caller may read, and whether people are shown pseudonymised: the one
//! tenancy decision behind every view of visits, alarms and outcomes.
//!
//! A provider's staff see their own organisation's rows, with names. A commissioner's
//! organisation (its commissioners and auditors) sees the rows of the providers it contracts,
//! only for people it funds on the day (`homeward_funded` in the database), pseudonymised. The
//! decision follows the organisation's kind, not the role: every role fits one kind of
//! organisation (auditors either), so the two agree, and the kind also covers auditors.
//! Which roles may open a view stays with the view.

use tokio_postgres::GenericClient;

use super::{Caller, OrgKind};
use crate::http::ApiError;

/// What a caller may see; built by [`visibility`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    organisation: i32,
    /// The providers whose rows may be read: the caller's own organisation, or those a
    /// commissioner contracts (ascending).
    providers: Vec<i32>,
    commissioner: bool,
}

/// Decides what `caller` may see. For a commissioner's organisation, reads the providers it
/// contracts.
pub async fn visibility(
    caller: &Caller,
    client: &impl GenericClient,
) -> Result<Visibility, ApiError> {
    let organisation = caller.organisation_id;
    Ok(match caller.organisation_kind {
        OrgKind::Provider => Visibility::provider(organisation),
        OrgKind::Commissioner => {
            let rows = client
                .query(
                    "SELECT DISTINCT provider_id FROM contracts WHERE commissioner_id = $1
                      ORDER BY provider_id",
                    &[&organisation],
                )
                .await?;
            Visibility {
                organisation,
                providers: rows.iter().map(|r| r.get(0)).collect(),
                commissioner: true,
            }
        }
    })
}

impl Visibility {
    /// A provider's own view.
    pub fn provider(organisation: i32) -> Self {
        Self {
            organisation,
            providers: vec![organisation],
            commissioner: false,
        }
    }

    /// The caller's organisation.
    pub fn organisation(&self) -> i32 {
        self.organisation
    }

    /// The providers whose rows may be read.
    pub fn providers(&self) -> &[i32] {
        &self.providers
    }

    /// Whether people appear by pseudonym and workers by number (commissioners).
    pub fn pseudonymise(&self) -> bool {
        self.commissioner
    }

    /// For a commissioner: only rows of people it funds on the row's day count
    /// (`homeward_funded(person, commissioner, day)` in the database). `None` for a provider.
    pub fn funded_by(&self) -> Option<i32> {
        self.commissioner.then_some(self.organisation)
    }

    /// May the caller read `provider`'s rows?
    pub fn sees(&self, provider: i32) -> bool {
        self.providers.contains(&provider)
    }

    /// The one provider a per-provider view shows: a provider's own (`asked` may only name
    /// itself); a commissioner must name one it contracts (`provider_id`). Another is "not
    /// found", as if it did not exist.
    pub fn one_provider(&self, asked: Option<i32>) -> Result<i32, ApiError> {
        let provider = match asked {
            Some(p) => p,
            None if self.commissioner => {
                return Err(ApiError::invalid(
                    "provider_id",
                    "required for commissioners",
                ))
            }
            None => self.organisation,
        };
        if self.sees(provider) {
            Ok(provider)
        } else {
            Err(ApiError::NotFound(format!("provider {provider}")))
        }
    }

    /// The caller's organisation, for views only a provider has (its own alarms, missed
    /// visits); a commissioner is refused.
    pub fn own_provider(&self) -> Result<i32, ApiError> {
        if self.commissioner {
            Err(ApiError::Forbidden(
                "this view is a provider's own; commissioners read figures".into(),
            ))
        } else {
            Ok(self.organisation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commissioner(providers: Vec<i32>) -> Visibility {
        Visibility {
            organisation: 9,
            providers,
            commissioner: true,
        }
    }

    #[test]
    fn providers_see_only_themselves_with_names() {
        let v = Visibility::provider(3);
        assert_eq!(v.providers(), &[3]);
        assert!(!v.pseudonymise());
        assert_eq!(v.funded_by(), None);
        assert_eq!(v.one_provider(None).unwrap(), 3);
        assert_eq!(v.one_provider(Some(3)).unwrap(), 3);
        assert!(matches!(
            v.one_provider(Some(4)),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(v.own_provider().unwrap(), 3);
    }

    #[test]
    fn commissioners_see_contracted_providers_pseudonymised() {
        let v = commissioner(vec![3, 5]);
        assert!(v.pseudonymise());
        assert_eq!(v.funded_by(), Some(9));
        assert!(v.sees(5) && !v.sees(4) && !v.sees(9));
        assert_eq!(v.one_provider(Some(5)).unwrap(), 5);
        assert!(matches!(
            v.one_provider(Some(4)),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(v.one_provider(None), Err(ApiError::Validation(_))));
        assert!(matches!(v.own_provider(), Err(ApiError::Forbidden(_))));
    }
}
