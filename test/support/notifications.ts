import type { Page } from 'playwright-core';

/**
 * Waits for a notification saying `text`, then closes every notification, as a person
 * would: they sit over the top right of the page (where page actions are) and a pointer
 * resting on them keeps them open.
 */
export async function seeNotification(page: Page, text: string | RegExp): Promise<void> {
  const notifications = page.locator('.mantine-Notification-root');
  await notifications.filter({ hasText: text }).first().waitFor();
  for (let count = await notifications.count(); count > 0; count = await notifications.count()) {
    await notifications.first().locator('.mantine-Notification-closeButton').click();
    await page.waitForFunction((before) => document.querySelectorAll('.mantine-Notification-root').length < before, count);
  }
}
