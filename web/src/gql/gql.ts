/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  fragment MoneyFields on Money {\n    amount\n    currency\n    decimal\n  }\n": typeof types.MoneyFieldsFragmentDoc,
    "\n  query ConfigAndPlans {\n    billingConfig {\n      publishableKey\n      sandbox\n      stripeJsUrl\n    }\n    plans {\n      id\n      productName\n      description\n      interval\n      intervalCount\n      credits\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n": typeof types.ConfigAndPlansDocument,
    "\n  fragment SubscriptionFields on Subscription {\n    id\n    status\n    cancelAtPeriodEnd\n    currentPeriodEnd\n    plan {\n      id\n      productName\n      interval\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n": typeof types.SubscriptionFieldsFragmentDoc,
    "\n  query Billing {\n    viewer {\n      userId\n      access {\n        status\n        hasAccess\n        until\n      }\n      subscriptions(first: 5) {\n        edges {\n          node {\n            ...SubscriptionFields\n          }\n        }\n      }\n      paymentMethods {\n        id\n        brand\n        last4\n        isDefault\n      }\n      invoices(first: 10) {\n        totalCount\n        edges {\n          node {\n            id\n            number\n            status\n            createdAt\n            pdfUrl\n            total {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n      credits {\n        balance\n        entries(first: 10) {\n          edges {\n            node {\n              id\n              kind\n              amount\n              balanceAfter\n              reason\n              createdAt\n            }\n          }\n        }\n      }\n    }\n  }\n": typeof types.BillingDocument,
    "\n  query PaymentHistory($first: Int!, $after: String) {\n    viewer {\n      transactions(first: $first, after: $after) {\n        totalCount\n        pageInfo {\n          hasNextPage\n          endCursor\n        }\n        edges {\n          node {\n            id\n            status\n            createdAt\n            description\n            failureMessage\n            amount {\n              ...MoneyFields\n            }\n            amountRefunded {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n    }\n  }\n": typeof types.PaymentHistoryDocument,
    "\n  subscription BillingUpdates {\n    billingUpdates {\n      kind\n      occurredAt\n      subscription {\n        ...SubscriptionFields\n      }\n      creditBalance\n    }\n  }\n": typeof types.BillingUpdatesDocument,
    "\n  mutation CreateSubscription($input: CreateSubscriptionInput!) {\n    createSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      clientSecret\n      requiresAction\n      userErrors {\n        code\n        field\n        message\n      }\n    }\n  }\n": typeof types.CreateSubscriptionDocument,
    "\n  mutation ChangePlan($input: ChangeSubscriptionPlanInput!) {\n    changeSubscriptionPlan(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": typeof types.ChangePlanDocument,
    "\n  mutation CancelSubscription($input: CancelSubscriptionInput!) {\n    cancelSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": typeof types.CancelSubscriptionDocument,
    "\n  mutation ResumeSubscription($input: ResumeSubscriptionInput!) {\n    resumeSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": typeof types.ResumeSubscriptionDocument,
    "\n  query AdminOverview($search: String, $status: [WebhookEventStatus!]) {\n    admin {\n      metrics {\n        mrr {\n          ...MoneyFields\n        }\n        arr {\n          ...MoneyFields\n        }\n        churnRate30d\n        paymentSuccessRate30d\n        activeSubscriptions\n        trialingSubscriptions\n        pastDueSubscriptions\n      }\n      customers(first: 20, search: $search) {\n        totalCount\n        edges {\n          node {\n            id\n            userId\n            email\n            createdAt\n          }\n        }\n      }\n      webhookEvents(first: 20, status: $status) {\n        totalCount\n        edges {\n          node {\n            id\n            stripeEventId\n            type\n            status\n            attempts\n            lastError\n            receivedAt\n          }\n        }\n      }\n    }\n  }\n": typeof types.AdminOverviewDocument,
    "\n  subscription AdminWebhookEvents {\n    webhookEvents {\n      id\n      status\n      attempts\n      lastError\n    }\n  }\n": typeof types.AdminWebhookEventsDocument,
    "\n  mutation ReplayWebhookEvent($input: ReplayWebhookEventInput!) {\n    replayWebhookEvent(input: $input) {\n      event {\n        id\n        stripeEventId\n        status\n        attempts\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": typeof types.ReplayWebhookEventDocument,
};
const documents: Documents = {
    "\n  fragment MoneyFields on Money {\n    amount\n    currency\n    decimal\n  }\n": types.MoneyFieldsFragmentDoc,
    "\n  query ConfigAndPlans {\n    billingConfig {\n      publishableKey\n      sandbox\n      stripeJsUrl\n    }\n    plans {\n      id\n      productName\n      description\n      interval\n      intervalCount\n      credits\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n": types.ConfigAndPlansDocument,
    "\n  fragment SubscriptionFields on Subscription {\n    id\n    status\n    cancelAtPeriodEnd\n    currentPeriodEnd\n    plan {\n      id\n      productName\n      interval\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n": types.SubscriptionFieldsFragmentDoc,
    "\n  query Billing {\n    viewer {\n      userId\n      access {\n        status\n        hasAccess\n        until\n      }\n      subscriptions(first: 5) {\n        edges {\n          node {\n            ...SubscriptionFields\n          }\n        }\n      }\n      paymentMethods {\n        id\n        brand\n        last4\n        isDefault\n      }\n      invoices(first: 10) {\n        totalCount\n        edges {\n          node {\n            id\n            number\n            status\n            createdAt\n            pdfUrl\n            total {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n      credits {\n        balance\n        entries(first: 10) {\n          edges {\n            node {\n              id\n              kind\n              amount\n              balanceAfter\n              reason\n              createdAt\n            }\n          }\n        }\n      }\n    }\n  }\n": types.BillingDocument,
    "\n  query PaymentHistory($first: Int!, $after: String) {\n    viewer {\n      transactions(first: $first, after: $after) {\n        totalCount\n        pageInfo {\n          hasNextPage\n          endCursor\n        }\n        edges {\n          node {\n            id\n            status\n            createdAt\n            description\n            failureMessage\n            amount {\n              ...MoneyFields\n            }\n            amountRefunded {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n    }\n  }\n": types.PaymentHistoryDocument,
    "\n  subscription BillingUpdates {\n    billingUpdates {\n      kind\n      occurredAt\n      subscription {\n        ...SubscriptionFields\n      }\n      creditBalance\n    }\n  }\n": types.BillingUpdatesDocument,
    "\n  mutation CreateSubscription($input: CreateSubscriptionInput!) {\n    createSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      clientSecret\n      requiresAction\n      userErrors {\n        code\n        field\n        message\n      }\n    }\n  }\n": types.CreateSubscriptionDocument,
    "\n  mutation ChangePlan($input: ChangeSubscriptionPlanInput!) {\n    changeSubscriptionPlan(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": types.ChangePlanDocument,
    "\n  mutation CancelSubscription($input: CancelSubscriptionInput!) {\n    cancelSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": types.CancelSubscriptionDocument,
    "\n  mutation ResumeSubscription($input: ResumeSubscriptionInput!) {\n    resumeSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": types.ResumeSubscriptionDocument,
    "\n  query AdminOverview($search: String, $status: [WebhookEventStatus!]) {\n    admin {\n      metrics {\n        mrr {\n          ...MoneyFields\n        }\n        arr {\n          ...MoneyFields\n        }\n        churnRate30d\n        paymentSuccessRate30d\n        activeSubscriptions\n        trialingSubscriptions\n        pastDueSubscriptions\n      }\n      customers(first: 20, search: $search) {\n        totalCount\n        edges {\n          node {\n            id\n            userId\n            email\n            createdAt\n          }\n        }\n      }\n      webhookEvents(first: 20, status: $status) {\n        totalCount\n        edges {\n          node {\n            id\n            stripeEventId\n            type\n            status\n            attempts\n            lastError\n            receivedAt\n          }\n        }\n      }\n    }\n  }\n": types.AdminOverviewDocument,
    "\n  subscription AdminWebhookEvents {\n    webhookEvents {\n      id\n      status\n      attempts\n      lastError\n    }\n  }\n": types.AdminWebhookEventsDocument,
    "\n  mutation ReplayWebhookEvent($input: ReplayWebhookEventInput!) {\n    replayWebhookEvent(input: $input) {\n      event {\n        id\n        stripeEventId\n        status\n        attempts\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n": types.ReplayWebhookEventDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment MoneyFields on Money {\n    amount\n    currency\n    decimal\n  }\n"): (typeof documents)["\n  fragment MoneyFields on Money {\n    amount\n    currency\n    decimal\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query ConfigAndPlans {\n    billingConfig {\n      publishableKey\n      sandbox\n      stripeJsUrl\n    }\n    plans {\n      id\n      productName\n      description\n      interval\n      intervalCount\n      credits\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n"): (typeof documents)["\n  query ConfigAndPlans {\n    billingConfig {\n      publishableKey\n      sandbox\n      stripeJsUrl\n    }\n    plans {\n      id\n      productName\n      description\n      interval\n      intervalCount\n      credits\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  fragment SubscriptionFields on Subscription {\n    id\n    status\n    cancelAtPeriodEnd\n    currentPeriodEnd\n    plan {\n      id\n      productName\n      interval\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n"): (typeof documents)["\n  fragment SubscriptionFields on Subscription {\n    id\n    status\n    cancelAtPeriodEnd\n    currentPeriodEnd\n    plan {\n      id\n      productName\n      interval\n      amount {\n        ...MoneyFields\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Billing {\n    viewer {\n      userId\n      access {\n        status\n        hasAccess\n        until\n      }\n      subscriptions(first: 5) {\n        edges {\n          node {\n            ...SubscriptionFields\n          }\n        }\n      }\n      paymentMethods {\n        id\n        brand\n        last4\n        isDefault\n      }\n      invoices(first: 10) {\n        totalCount\n        edges {\n          node {\n            id\n            number\n            status\n            createdAt\n            pdfUrl\n            total {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n      credits {\n        balance\n        entries(first: 10) {\n          edges {\n            node {\n              id\n              kind\n              amount\n              balanceAfter\n              reason\n              createdAt\n            }\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Billing {\n    viewer {\n      userId\n      access {\n        status\n        hasAccess\n        until\n      }\n      subscriptions(first: 5) {\n        edges {\n          node {\n            ...SubscriptionFields\n          }\n        }\n      }\n      paymentMethods {\n        id\n        brand\n        last4\n        isDefault\n      }\n      invoices(first: 10) {\n        totalCount\n        edges {\n          node {\n            id\n            number\n            status\n            createdAt\n            pdfUrl\n            total {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n      credits {\n        balance\n        entries(first: 10) {\n          edges {\n            node {\n              id\n              kind\n              amount\n              balanceAfter\n              reason\n              createdAt\n            }\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query PaymentHistory($first: Int!, $after: String) {\n    viewer {\n      transactions(first: $first, after: $after) {\n        totalCount\n        pageInfo {\n          hasNextPage\n          endCursor\n        }\n        edges {\n          node {\n            id\n            status\n            createdAt\n            description\n            failureMessage\n            amount {\n              ...MoneyFields\n            }\n            amountRefunded {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query PaymentHistory($first: Int!, $after: String) {\n    viewer {\n      transactions(first: $first, after: $after) {\n        totalCount\n        pageInfo {\n          hasNextPage\n          endCursor\n        }\n        edges {\n          node {\n            id\n            status\n            createdAt\n            description\n            failureMessage\n            amount {\n              ...MoneyFields\n            }\n            amountRefunded {\n              ...MoneyFields\n            }\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription BillingUpdates {\n    billingUpdates {\n      kind\n      occurredAt\n      subscription {\n        ...SubscriptionFields\n      }\n      creditBalance\n    }\n  }\n"): (typeof documents)["\n  subscription BillingUpdates {\n    billingUpdates {\n      kind\n      occurredAt\n      subscription {\n        ...SubscriptionFields\n      }\n      creditBalance\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CreateSubscription($input: CreateSubscriptionInput!) {\n    createSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      clientSecret\n      requiresAction\n      userErrors {\n        code\n        field\n        message\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation CreateSubscription($input: CreateSubscriptionInput!) {\n    createSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      clientSecret\n      requiresAction\n      userErrors {\n        code\n        field\n        message\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ChangePlan($input: ChangeSubscriptionPlanInput!) {\n    changeSubscriptionPlan(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation ChangePlan($input: ChangeSubscriptionPlanInput!) {\n    changeSubscriptionPlan(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CancelSubscription($input: CancelSubscriptionInput!) {\n    cancelSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation CancelSubscription($input: CancelSubscriptionInput!) {\n    cancelSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ResumeSubscription($input: ResumeSubscriptionInput!) {\n    resumeSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation ResumeSubscription($input: ResumeSubscriptionInput!) {\n    resumeSubscription(input: $input) {\n      subscription {\n        ...SubscriptionFields\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query AdminOverview($search: String, $status: [WebhookEventStatus!]) {\n    admin {\n      metrics {\n        mrr {\n          ...MoneyFields\n        }\n        arr {\n          ...MoneyFields\n        }\n        churnRate30d\n        paymentSuccessRate30d\n        activeSubscriptions\n        trialingSubscriptions\n        pastDueSubscriptions\n      }\n      customers(first: 20, search: $search) {\n        totalCount\n        edges {\n          node {\n            id\n            userId\n            email\n            createdAt\n          }\n        }\n      }\n      webhookEvents(first: 20, status: $status) {\n        totalCount\n        edges {\n          node {\n            id\n            stripeEventId\n            type\n            status\n            attempts\n            lastError\n            receivedAt\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query AdminOverview($search: String, $status: [WebhookEventStatus!]) {\n    admin {\n      metrics {\n        mrr {\n          ...MoneyFields\n        }\n        arr {\n          ...MoneyFields\n        }\n        churnRate30d\n        paymentSuccessRate30d\n        activeSubscriptions\n        trialingSubscriptions\n        pastDueSubscriptions\n      }\n      customers(first: 20, search: $search) {\n        totalCount\n        edges {\n          node {\n            id\n            userId\n            email\n            createdAt\n          }\n        }\n      }\n      webhookEvents(first: 20, status: $status) {\n        totalCount\n        edges {\n          node {\n            id\n            stripeEventId\n            type\n            status\n            attempts\n            lastError\n            receivedAt\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription AdminWebhookEvents {\n    webhookEvents {\n      id\n      status\n      attempts\n      lastError\n    }\n  }\n"): (typeof documents)["\n  subscription AdminWebhookEvents {\n    webhookEvents {\n      id\n      status\n      attempts\n      lastError\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ReplayWebhookEvent($input: ReplayWebhookEventInput!) {\n    replayWebhookEvent(input: $input) {\n      event {\n        id\n        stripeEventId\n        status\n        attempts\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation ReplayWebhookEvent($input: ReplayWebhookEventInput!) {\n    replayWebhookEvent(input: $input) {\n      event {\n        id\n        stripeEventId\n        status\n        attempts\n      }\n      userErrors {\n        code\n        message\n      }\n    }\n  }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;