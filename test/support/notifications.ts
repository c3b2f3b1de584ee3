import type { Page } from 'playwright-core';

/**
 * Waits for a notification saying `text`, then closes every notification, as a person
 * would: they sit over the bottom right of the page (where a table's last rows and
 * actions are) and a pointer resting on them keeps them open.
 */
export async function seeNotification(page: Page, text: string | RegExp): Promise<void> {
  // A closed notification collapses before it leaves the DOM: count the visible ones.
  const visible = page.locator('.mantine-Notification-root:visible');
  await visible.filter({ hasText: text }).first().waitFor();
  while ((await visible.count()) > 0) {
    const notification = visible.first();
    const id = await notification.getAttribute('id');
    await notification.locator('.mantine-Notification-closeButton').click();
    await page.locator(`[id="${id}"]`).waitFor({ state: 'hidden' });
  }
}
