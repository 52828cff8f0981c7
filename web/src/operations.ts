import { graphql } from "./gql";

export const MONEY = graphql(`
  fragment MoneyFields on Money {
    amount
    currency
    decimal
  }
`);

export const CONFIG_AND_PLANS = graphql(`
  query ConfigAndPlans {
    billingConfig {
      publishableKey
      sandbox
      stripeJsUrl
    }
    plans {
      id
      productName
      description
      interval
      intervalCount
      credits
      amount {
        ...MoneyFields
      }
    }
  }
`);

export const SUBSCRIPTION_FIELDS = graphql(`
  fragment SubscriptionFields on Subscription {
    id
    status
    cancelAtPeriodEnd
    currentPeriodEnd
    plan {
      id
      productName
      interval
      amount {
        ...MoneyFields
      }
    }
  }
`);

export const BILLING = graphql(`
  query Billing {
    viewer {
      userId
      access {
        status
        hasAccess
        until
      }
      subscriptions(first: 5) {
        edges {
          node {
            ...SubscriptionFields
          }
        }
      }
      paymentMethods {
        id
        brand
        last4
        isDefault
      }
      invoices(first: 10) {
        totalCount
        edges {
          node {
            id
            number
            status
            createdAt
            pdfUrl
            total {
              ...MoneyFields
            }
          }
        }
      }
      credits {
        balance
        entries(first: 10) {
          edges {
            node {
              id
              kind
              amount
              balanceAfter
              reason
              createdAt
            }
          }
        }
      }
    }
  }
`);

export const PAYMENT_HISTORY = graphql(`
  query PaymentHistory($first: Int!, $after: String) {
    viewer {
      transactions(first: $first, after: $after) {
        totalCount
        pageInfo {
          hasNextPage
          endCursor
        }
        edges {
          node {
            id
            status
            createdAt
            description
            failureMessage
            amount {
              ...MoneyFields
            }
            amountRefunded {
              ...MoneyFields
            }
          }
        }
      }
    }
  }
`);

export const BILLING_UPDATES = graphql(`
  subscription BillingUpdates {
    billingUpdates {
      kind
      occurredAt
      subscription {
        ...SubscriptionFields
      }
      creditBalance
    }
  }
`);

export const CREATE_SUBSCRIPTION = graphql(`
  mutation CreateSubscription($input: CreateSubscriptionInput!) {
    createSubscription(input: $input) {
      subscription {
        ...SubscriptionFields
      }
      clientSecret
      requiresAction
      userErrors {
        code
        field
        message
      }
    }
  }
`);

export const CHANGE_PLAN = graphql(`
  mutation ChangePlan($input: ChangeSubscriptionPlanInput!) {
    changeSubscriptionPlan(input: $input) {
      subscription {
        ...SubscriptionFields
      }
      userErrors {
        code
        message
      }
    }
  }
`);

export const CANCEL_SUBSCRIPTION = graphql(`
  mutation CancelSubscription($input: CancelSubscriptionInput!) {
    cancelSubscription(input: $input) {
      subscription {
        ...SubscriptionFields
      }
      userErrors {
        code
        message
      }
    }
  }
`);

export const RESUME_SUBSCRIPTION = graphql(`
  mutation ResumeSubscription($input: ResumeSubscriptionInput!) {
    resumeSubscription(input: $input) {
      subscription {
        ...SubscriptionFields
      }
      userErrors {
        code
        message
      }
    }
  }
`);

export const ADMIN_OVERVIEW = graphql(`
  query AdminOverview($search: String, $status: [WebhookEventStatus!]) {
    admin {
      metrics {
        mrr {
          ...MoneyFields
        }
        arr {
          ...MoneyFields
        }
        churnRate30d
        paymentSuccessRate30d
        activeSubscriptions
        trialingSubscriptions
        pastDueSubscriptions
      }
      customers(first: 20, search: $search) {
        totalCount
        edges {
          node {
            id
            userId
            email
            createdAt
          }
        }
      }
      webhookEvents(first: 20, status: $status) {
        totalCount
        edges {
          node {
            id
            stripeEventId
            type
            status
            attempts
            lastError
            receivedAt
          }
        }
      }
    }
  }
`);

export const ADMIN_WEBHOOK_EVENTS = graphql(`
  subscription AdminWebhookEvents {
    webhookEvents {
      id
      status
      attempts
      lastError
    }
  }
`);

export const REPLAY_WEBHOOK_EVENT = graphql(`
  mutation ReplayWebhookEvent($input: ReplayWebhookEventInput!) {
    replayWebhookEvent(input: $input) {
      event {
        id
        stripeEventId
        status
        attempts
      }
      userErrors {
        code
        message
      }
    }
  }
`);
