//! [`sql_enum!`](crate::sql_enum!): a closed set of values stored as text in SQL and sent as the
//! same text in JSON, with the text of each variant written once, next to it.
//!
//! Used for every such set (alarm kinds and states, device kinds, ...): `as_str` gives the
//! text to bind as a query parameter, `parse` reads a column back (`None` for a text the set
//! does not know, which the caller reports as corrupt data or a bad request), `ALL` lists the
//! variants in declaration order.

/// Declares `pub enum $name` with `Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize,
/// Deserialize` (as the SQL text), `ToSchema` (a string enum of those texts in the OpenAPI
/// description), `ALL`, `as_str`, `texts` (all of them, comma-separated), `parse` and `Display`.
///
/// ```ignore
/// sql_enum! {
///     /// What a device is.
///     DeviceKind {
///         Hub = "hub",
///         Phone = "phone",
///     }
/// }
/// ```
macro_rules! sql_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)*
        }

        // Written out rather than derived: the derive does not see the variants' `rename`
        // through the macro and would describe the Rust names instead of the texts.
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),*]))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The text stored in SQL (and sent in JSON).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Every text, comma-separated, for messages that list the set.
            pub fn texts() -> String {
                [$($text),*].join(", ")
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use sql_enum;

#[cfg(test)]
mod tests {
    sql_enum! {
        /// A set for the test.
        Colour {
            Red = "red",
            /// A variant with a doc comment, and a text that is not its name in snake case.
            DarkBlue = "navy",
        }
    }

    #[test]
    fn text_sql_and_json_agree_for_every_variant() {
        assert_eq!(Colour::ALL, &[Colour::Red, Colour::DarkBlue]);
        for &c in Colour::ALL {
            assert_eq!(Colour::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), c);
        }
        assert_eq!(
            serde_json::to_string(&Colour::DarkBlue).unwrap(),
            "\"navy\""
        );
        assert_eq!(Colour::texts(), "red, navy");
        assert_eq!(Colour::parse("Red"), None);
        assert_eq!(Colour::parse(""), None);
    }
}
