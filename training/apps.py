from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        # The loop listens to the feedback app (feedback/signals.py); feedback never imports
        # training. dispatch_uid: connected once even if ready() runs twice.
        from feedback import signals
        from training import receivers

        signals.project_created.connect(
            receivers.policy_base_on_project_created, dispatch_uid="training-policy-base"
        )
        signals.loop_waiting_asked.connect(
            receivers.loop_waiting_on_ask, dispatch_uid="training-loop-waiting"
        )
        signals.label_stored.connect(
            receivers.iteration_trigger_on_label, dispatch_uid="training-iteration-trigger"
        )
        signals.label_stored.connect(
            receivers.human_gate_check_on_label, dispatch_uid="training-human-gate-check"
        )
        signals.label_stored.connect(
            receivers.reward_health_score_on_label, dispatch_uid="training-reward-health"
        )
