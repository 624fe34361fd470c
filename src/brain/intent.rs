//! Intents: what a question is about, and the permission each needs. The mapping from intent to
//! permission lives here and nowhere else.

use serde::Serialize;

use crate::texts::Lang;

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Help,
    OrderStatus,
    DeliveryStatus,
    SalesSummary,
    StockLevel,
    ProductionStatus,
    MachineHealth,
    Receivables,
    Payables,
    PurchaseStatus,
    CashPosition,
    Alerts,
    VendorScore,
    CustomerInsight,
    AlertMute,
    OtpCode,
    GeneralQuestion,
}

impl Intent {
    /// The permission code the asker needs; `None` for intents that read no business data.
    pub fn permission(self) -> Option<&'static str> {
        use Intent::*;
        match self {
            OrderStatus | SalesSummary | CustomerInsight => Some("SO.READ"),
            DeliveryStatus => Some("DO.READ"),
            StockLevel => Some("INV.READ"),
            ProductionStatus => Some("WO.READ"),
            MachineHealth => Some("MAINT.READ"),
            Receivables | Payables | CashPosition => Some("FIN.READ"),
            PurchaseStatus | VendorScore => Some("PO.READ"),
            Alerts | AlertMute => Some("ALERT.READ"),
            Help | OtpCode | GeneralQuestion => None,
        }
    }

    /// The area named in a refusal.
    pub fn area(self, lang: Lang) -> &'static str {
        use Intent::*;
        let (id, en) = match self {
            OrderStatus | SalesSummary | CustomerInsight => ("penjualan", "sales"),
            DeliveryStatus => ("pengiriman", "deliveries"),
            StockLevel => ("stok gudang", "inventory"),
            ProductionStatus => ("produksi", "production"),
            MachineHealth => ("perawatan mesin", "machine maintenance"),
            Receivables | Payables | CashPosition => ("keuangan", "finance"),
            PurchaseStatus | VendorScore => ("pembelian", "purchasing"),
            Alerts | AlertMute => ("peringatan", "alerts"),
            Help | OtpCode | GeneralQuestion => ("umum", "general"),
        };
        match lang {
            Lang::Id => id,
            Lang::En => en,
        }
    }
}

/// Keyword groups per intent, checked in order: the first intent with a matching keyword wins.
/// Words are matched on whole tokens of the lower-cased text; entries with a space match as a
/// phrase.
const RULES: &[(Intent, &[&str])] = &[
    (
        Intent::Receivables,
        &[
            "piutang",
            "receivable",
            "receivables",
            "overdue",
            "tagihan",
            "ar",
        ],
    ),
    (
        Intent::Payables,
        &["hutang", "utang", "payable", "payables", "ap"],
    ),
    (Intent::CashPosition, &["kas", "cash", "saldo", "cashflow"]),
    (
        Intent::SalesSummary,
        &["omzet", "omset", "revenue", "penjualan", "sales"],
    ),
    (
        Intent::StockLevel,
        &["stok", "stock", "inventory", "persediaan", "gudang"],
    ),
    (
        Intent::MachineHealth,
        &["mesin", "machine", "maintenance", "perawatan", "downtime"],
    ),
    (
        Intent::ProductionStatus,
        &["produksi", "production", "reject", "wo", "output"],
    ),
    (
        Intent::DeliveryStatus,
        &[
            "kirim",
            "dikirim",
            "pengiriman",
            "delivery",
            "do",
            "shipped",
        ],
    ),
    (Intent::PurchaseStatus, &["po", "purchase", "pembelian"]),
    (Intent::VendorScore, &["vendor", "supplier", "pemasok"]),
    (Intent::OrderStatus, &["so", "order", "pesanan"]),
    (Intent::Alerts, &["alert", "alerts", "peringatan", "alarm"]),
    (Intent::Help, &["help", "bantuan", "menu", "bisa apa"]),
];

/// A first, keyword-based classification.
pub fn classify(text: &str) -> Intent {
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    for (intent, words) in RULES {
        let hit = words.iter().any(|w| {
            if w.contains(' ') {
                lower.contains(w)
            } else {
                tokens.contains(w)
            }
        });
        if hit {
            return *intent;
        }
    }
    Intent::GeneralQuestion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finance_questions_need_fin_read() {
        assert_eq!(
            classify("piutang yang overdue siapa saja?"),
            Intent::Receivables
        );
        assert_eq!(Intent::Receivables.permission(), Some("FIN.READ"));
        assert_eq!(classify("omzet bulan ini brp"), Intent::SalesSummary);
        assert_eq!(classify("halo"), Intent::GeneralQuestion);
        assert_eq!(Intent::GeneralQuestion.permission(), None);
    }
}
