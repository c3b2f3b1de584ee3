import { Button, Group, Modal, Stack, Text, TextInput } from '@mantine/core';
import { type ReactNode, useState } from 'react';

export interface ConfirmActionModalProps {
  opened: boolean;
  onClose(): void;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  /** Red for what cannot be undone. */
  color?: string;
  /** When set, the person types this text before the action is allowed (a name, say). */
  typeToConfirm?: string;
  loading?: boolean;
  onConfirm(): void;
}

/** Asks before a destructive or disruptive action, optionally making the person type a name. */
export function ConfirmActionModal(props: ConfirmActionModalProps) {
  return (
    <Modal opened={props.opened} onClose={props.onClose} title={<Text fw={700}>{props.title}</Text>} centered>
      <ConfirmForm {...props} />
    </Modal>
  );
}

/** The modal's content: unmounted when it closes, so the typed text starts empty each time. */
function ConfirmForm(props: ConfirmActionModalProps) {
  const [typed, setTyped] = useState('');
  const allowed = props.typeToConfirm === undefined || typed === props.typeToConfirm;
  return (
    <form
      onSubmit={(event) => {
        event.preventDefault();
        if (allowed) props.onConfirm();
      }}
    >
      <Stack>
        <div>{props.children}</div>
        {props.typeToConfirm !== undefined && (
          <TextInput
            label={
              <>
                Type <b>{props.typeToConfirm}</b> to confirm
              </>
            }
            name="confirm"
            autoComplete="off"
            data-autofocus
            value={typed}
            onChange={(event) => setTyped(event.currentTarget.value)}
          />
        )}
        <Group justify="flex-end" gap="sm">
          <Button variant="default" onClick={props.onClose}>
            Cancel
          </Button>
          <Button type="submit" color={props.color ?? 'red'} disabled={!allowed} loading={props.loading}>
            {props.confirmLabel}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
