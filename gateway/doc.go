// Package gateway is caddy-wxpay's service: what the gateway does for a
// merchant's backend, independent of Caddy, of the WeChat Pay API version
// and of the database.
//
//   - PlaceOrder places an order (统一下单) and answers signed client pay
//     parameters; the order is recorded before its prepay_id is handed out,
//     and the same order asked again is answered from the ledger.
//   - AcceptPaymentNotification takes one of WeChat's payment
//     notifications: verify (the API version's job), check the merchant,
//     cross-check it against the order placed, record the event durably
//     with its outbox entry, and only then build the reply that tells
//     WeChat it arrived.
//   - QueryOrder, CloseOrder, Refund, QueryRefund and DownloadBill call
//     WeChat for an order's life after it is placed; AcceptRefundNotification
//     takes a refund notification like a payment one.
//   - Reconciler asks WeChat about orders whose notification is overdue.
//
// The service speaks protocol-neutral types (OrderRequest, Payment,
// RefundNotice…) in WeChat's API v2 field names, the gateway's language,
// with amounts as integers in fen. Each API version implements Protocol in
// its own package (apiv2 for API v2); nothing here knows its signatures or
// encodings. The ledger is reached through the small interfaces declared
// here (Ledger, ReconcileLedger), which package ledger implements.
//
// Data flows one way: a handler calls the Service, the Service calls the
// Protocol and the ledger; the ledger never calls back.
package gateway
